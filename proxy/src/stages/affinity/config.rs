//! `responses`: the Responses affinity store's settings (the affinity stage's config).

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{A_YEAR, Problems};

pub const DEFAULT_AFFINITY_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_AFFINITY_CAPACITY: u64 = 100_000;

/// `responses`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// How long a response id stays pinned to its backend. Default `86400s`, at most 366 days.
    pub affinity_ttl: Option<String>,
    /// Most response ids remembered (in-process store). Default 100000.
    pub affinity_capacity: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ResponsesConfig {
    pub affinity_ttl: Duration,
    pub affinity_capacity: u64,
}

pub fn resolve(raw: RawResponses, problems: &mut Problems) -> ResponsesConfig {
    let RawResponses {
        affinity_ttl,
        affinity_capacity,
    } = raw;
    ResponsesConfig {
        affinity_ttl: problems.bounded_duration(
            "responses.affinity_ttl",
            affinity_ttl,
            DEFAULT_AFFINITY_TTL,
            A_YEAR,
        ),
        affinity_capacity: affinity_capacity.unwrap_or(DEFAULT_AFFINITY_CAPACITY),
    }
}
