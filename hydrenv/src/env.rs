//! The environment, read once into a map, and the strict parsers every variable goes through.
//! Nothing after the snapshot reads the process environment; tests pass maps.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The environment as hydrenv sees it.
pub type Env = BTreeMap<String, String>;

/// Reads the process environment once. Non-UTF-8 variables are reported, not dropped silently.
pub fn snapshot() -> (Env, Vec<EnvError>) {
    let mut env = Env::new();
    let mut errors = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => {
                env.insert(name, value);
            }
            (Ok(name), Err(_)) => errors.push(EnvError::new(&name, "value is not valid UTF-8")),
            (Err(_), _) => {}
        }
    }
    (env, errors)
}

/// One problem with one variable. Never carries a value that may be secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub variable: String,
    pub message: String,
}

impl EnvError {
    pub fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// `true/false/1/0/yes/no/on/off`, any case, trimmed.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, EnvError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(EnvError::new(
            name,
            format!("`{value}` is not a boolean (use true/false, 1/0, yes/no, on/off)"),
        )),
    }
}

/// A whole number, strictly (no sign, no unit, no fraction).
pub fn parse_u64(name: &str, value: &str) -> Result<u64, EnvError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EnvError::new(
            name,
            format!("`{value}` is not a whole number"),
        ));
    }
    trimmed
        .parse()
        .map_err(|_| EnvError::new(name, format!("`{value}` is too large")))
}

/// An integer that may be negative (priorities).
pub fn parse_i64(name: &str, value: &str) -> Result<i64, EnvError> {
    let trimmed = value.trim();
    let digits = trimmed.strip_prefix('-').unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EnvError::new(
            name,
            format!("`{value}` is not a whole number"),
        ));
    }
    trimmed
        .parse()
        .map_err(|_| EnvError::new(name, format!("`{value}` is out of range")))
}

/// A finite, non-negative decimal number.
pub fn parse_f64(name: &str, value: &str) -> Result<f64, EnvError> {
    let trimmed = value.trim();
    let ok = !trimmed.is_empty()
        && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && trimmed.bytes().filter(|&b| b == b'.').count() <= 1
        && trimmed != ".";
    match trimmed.parse::<f64>() {
        Ok(v) if ok && v.is_finite() => Ok(v),
        Ok(v) if trimmed.starts_with('-') && v.is_finite() => Err(EnvError::new(
            name,
            format!("`{value}` is negative: give a number of 0 or more, like `2.5`"),
        )),
        _ => Err(EnvError::new(
            name,
            format!("`{value}` is not a number (digits and one `.`, like `2.5`)"),
        )),
    }
}

/// Seconds as a number (`60`, `0.5`) or with a unit (`60s`, `500ms`, `5m`).
pub fn parse_seconds(name: &str, value: &str) -> Result<Duration, EnvError> {
    let trimmed = value.trim();
    if trimmed.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return proxy::config::parse_duration(trimmed).map_err(|e| EnvError::new(name, e));
    }
    let seconds = parse_f64(name, value)?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| EnvError::new(name, format!("`{value}` is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_strict() {
        for yes in ["true", "TRUE", " 1 ", "yes", "On"] {
            assert_eq!(parse_bool("X", yes), Ok(true));
        }
        for no in ["false", "0", "no", "OFF"] {
            assert_eq!(parse_bool("X", no), Ok(false));
        }
        let err = parse_bool("ENABLE_X", "maybe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ENABLE_X: `maybe` is not a boolean (use true/false, 1/0, yes/no, on/off)"
        );
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_u64("N", "42"), Ok(42));
        assert!(parse_u64("N", "4 2").is_err());
        assert!(parse_u64("N", "-1").is_err());
        assert!(parse_u64("N", "1e3").is_err());
        assert_eq!(parse_i64("P", "-3"), Ok(-3));
        assert_eq!(parse_f64("F", "0.5"), Ok(0.5));
        assert!(parse_f64("F", "NaN").is_err());
        assert!(parse_f64("F", "1.2.3").is_err());
        assert_eq!(parse_seconds("T", "60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("T", "250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("T", "soon").is_err());
    }
}
