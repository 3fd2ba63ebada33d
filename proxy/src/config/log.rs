//! `log`: level, access records, and the queue to stdout.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Problems;

pub const DEFAULT_QUEUE_LINES: u32 = 8192;

/// `log`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Default `info`.
    pub level: Option<RawLevel>,
    /// One JSON access record per request. Default false.
    pub access: Option<bool>,
    /// Lines queued for stdout at most; when stdout is not read fast enough, further lines are
    /// dropped (and counted) instead of stalling requests. Read at start only. Default 8192.
    pub queue_lines: Option<u32>,
}

/// A log level.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `EnvFilter` directive: `error` .. `trace`.
    pub level: String,
    pub access: bool,
    /// Lines queued for stdout at most (read at start).
    pub queue_lines: usize,
}

pub(super) fn resolve(raw: RawLog, problems: &mut Problems) -> LogConfig {
    let RawLog {
        level,
        access,
        queue_lines,
    } = raw;
    let queue_lines = queue_lines.unwrap_or(DEFAULT_QUEUE_LINES);
    if queue_lines == 0 {
        problems.push("log.queue_lines", "must be at least 1");
    }
    let level = match level.unwrap_or(RawLevel::Info) {
        RawLevel::Error => "error",
        RawLevel::Warn => "warn",
        RawLevel::Info => "info",
        RawLevel::Debug => "debug",
        RawLevel::Trace => "trace",
    };
    LogConfig {
        level: level.to_owned(),
        access: access.unwrap_or(false),
        queue_lines: queue_lines as usize,
    }
}
