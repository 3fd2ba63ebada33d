//! Collecting config problems: every semantic problem is kept with its field path, so a user
//! sees all of them at once (`backends[2].endpoint: ...`), and the typed readers every section
//! shares (durations, addresses).

use std::net::SocketAddr;
use std::time::Duration;

use super::parse_duration;

/// The longest a window, a cached answer or a remembered response may last: the in-process
/// stores (moka) refuse a time to live beyond 1000 years with a panic, and nothing the gateway
/// keeps is useful for longer than a year.
pub const A_YEAR: (Duration, &str) = (Duration::from_secs(366 * 86_400), "366 days");

/// The problems found while resolving a config.
#[derive(Debug, Default)]
pub struct Problems(pub(super) Vec<String>);

impl Problems {
    pub fn push(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
        self.0
            .push(format!("{}: {}", path.as_ref(), message.as_ref()));
    }

    pub fn duration(&mut self, path: &str, value: Option<String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => parse_duration(&text).unwrap_or_else(|e| {
                self.push(path, e);
                default
            }),
        }
    }

    /// A duration that must not be zero (a zero timeout fails everything it guards at once).
    pub fn positive_duration(
        &mut self,
        path: &str,
        value: Option<String>,
        default: Duration,
    ) -> Duration {
        let duration = self.duration(path, value, default);
        if duration.is_zero() {
            self.push(path, "must be greater than 0");
        }
        duration
    }

    /// A duration above 0 and at most `most` (`most_text` says how much that is); see
    /// [`A_YEAR`].
    pub fn bounded_duration(
        &mut self,
        path: &str,
        value: Option<String>,
        default: Duration,
        (most, most_text): (Duration, &str),
    ) -> Duration {
        let duration = self.positive_duration(path, value, default);
        if duration > most {
            self.push(path, format!("must be at most {most_text}"));
        }
        duration
    }

    pub fn addr(&mut self, path: &str, value: Option<String>, default: &str) -> SocketAddr {
        let text = value.unwrap_or_else(|| default.to_owned());
        text.parse().unwrap_or_else(|_| {
            self.push(
                path,
                format!("`{text}` is not an address like `0.0.0.0:8080`"),
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }
}
