//! `cache`: the exact-match response cache (the cache stage's config). Off unless the section is
//! there.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{A_YEAR, Problems};

pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// `cache`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// How long an answer is served from the cache. Default `300s`, at most 366 days.
    pub ttl: Option<String>,
    /// Most bytes of answers (bodies and keys) held. Default 64 MiB.
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub max_bytes: u64,
}

pub fn resolve(raw: Option<RawCache>, problems: &mut Problems) -> Option<CacheConfig> {
    let raw = raw?;
    let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_CACHE_MAX_BYTES);
    if max_bytes == 0 {
        problems.push("cache.max_bytes", "must be greater than 0");
    }
    Some(CacheConfig {
        ttl: problems.bounded_duration("cache.ttl", raw.ttl, DEFAULT_CACHE_TTL, A_YEAR),
        max_bytes,
    })
}
