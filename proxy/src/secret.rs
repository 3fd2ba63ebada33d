//! `Secret`: a string that never prints itself.
//!
//! Backend keys and client keys travel in this type from the moment the config file is parsed
//! (the raw `Raw*` types hold it too). `Debug` and `Display` redact, and it is deliberately not
//! `Serialize`, so a secret cannot reach a log line, an error or a snapshot by accident.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

/// A secret string value; cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the few places that must send it (headers to the backend, comparisons).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Read from the config file as a plain string.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("sk-very-secret");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
