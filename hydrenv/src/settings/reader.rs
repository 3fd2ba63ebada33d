//! The reader every variable goes through: strict parsers, defaults, every problem collected
//! with its variable, and what a value is shown as.
//!
//! Settings are read twice from the same secret-resolved environment: once for the release, once
//! for what hydrenv shows (dry run, diff, check). Both passes parse and check the real values, so
//! they accept and refuse alike; they differ only in free text. In the shown pass the free text
//! of a hidden variable (a secret, or any value that came from Key Vault) is its placeholder
//! `<redacted:VARIABLE>`. A number, boolean, duration or a choice from a fixed list is shown as
//! parsed even when it came from Key Vault: it passed a strict parser, so it cannot carry a
//! credential, and hiding it would hide real changes from `hydrenv diff`.
//!
//! Error messages never quote a hidden value, in either pass: [`Reader::quote`] gives its
//! placeholder. Quoting it and scrubbing the message afterwards (`redact::text`) is not enough
//! on its own: a message may quote the value lowercased, escaped or only one item of it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{SecretText, format_seconds};
use crate::env::{self, Env, EnvError};
use crate::{redact, vars};

/// Reads variables and collects errors.
pub struct Reader<'a> {
    pub(super) env: &'a Env,
    pub(super) errors: Vec<EnvError>,
    /// Variables whose value is hidden (a secret, or a value from Key Vault; secret variables
    /// count whether listed or not): never quoted in a message.
    hidden: &'a BTreeSet<&'a str>,
    /// Whether the free text of a hidden variable goes into the settings as its placeholder
    /// (the shown pass) or as it is (the release pass).
    placeholders: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(env: &'a Env, hidden: &'a BTreeSet<&'a str>, placeholders: bool) -> Self {
        Self {
            env,
            errors: Vec::new(),
            hidden,
            placeholders,
        }
    }

    /// The real value; blank counts as unset.
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub(super) fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(EnvError::new(name, message));
    }

    pub(super) fn keep<T>(&mut self, result: Result<T, EnvError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    /// Whether this variable's value is hidden: never quoted in a message, in either pass.
    fn is_hidden(&self, name: &str) -> bool {
        self.hidden.contains(name) || vars::is_secret(name)
    }

    /// Whether this variable's free text is shown as its placeholder.
    pub(super) fn hides(&self, name: &str) -> bool {
        self.placeholders && self.is_hidden(name)
    }

    /// `text` (this variable's value, or a part of it) as a message quotes it: the placeholder
    /// of a hidden variable, else trimmed, escaped, URL userinfo masked.
    pub(super) fn quote(&self, name: &str, text: &str) -> String {
        if self.is_hidden(name) {
            redact::placeholder(name)
        } else {
            redact::mask_userinfo(text.trim())
                .escape_debug()
                .to_string()
        }
    }

    /// A URL as a message quotes it: the placeholder of a hidden variable, else
    /// `scheme://host[:port]/path`, never userinfo, query or fragment (the proxy's own form).
    pub(super) fn quote_url(&self, name: &str, url: &str) -> String {
        if self.is_hidden(name) {
            redact::placeholder(name)
        } else {
            proxy::config::backends::shown_endpoint(url)
        }
    }

    /// Free text as it goes into the settings: trimmed, or the placeholder of a hidden variable.
    pub(super) fn shown(&self, name: &str, value: &str) -> String {
        if self.hides(name) {
            redact::placeholder(name)
        } else {
            value.trim().to_owned()
        }
    }

    /// A secret as it goes into the settings: as it is (hydrenv refuses a secret that cannot be
    /// sent rather than repair it), or its placeholder.
    pub(super) fn secret(&self, name: &str, value: &str) -> SecretText {
        if self.hides(name) {
            SecretText(redact::placeholder(name))
        } else {
            SecretText(value.to_owned())
        }
    }

    /// Free text with a default, as shown.
    pub(super) fn text_or(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map_or_else(|| default.to_owned(), |v| self.shown(name, v))
    }

    /// The real value with a default, trimmed: for text that is checked or decides something.
    pub(super) fn value_or(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map_or_else(|| default.to_owned(), |v| v.trim().to_owned())
    }

    /// A choice from a fixed list (any case); shown as parsed. A refused value reads as the
    /// default, like every refused value: what follows never decides on it, nor quotes it.
    pub(super) fn one_of(&mut self, name: &str, default: &str, allowed: &[&str]) -> String {
        let value = self.value_or(name, default).to_ascii_lowercase();
        if !allowed.contains(&value.as_str()) {
            let quoted = self.quote(name, &value);
            self.error(
                name,
                format!("`{quoted}` is not one of {}", allowed.join(", ")),
            );
            return default.to_owned();
        }
        value
    }

    /// A strict parser's result, kept; its message quotes the value (`` `value` ``, as given or
    /// trimmed), which becomes the placeholder when the variable is hidden.
    fn parsed<T>(&mut self, name: &str, value: &str, result: Result<T, EnvError>) -> Option<T> {
        let hidden = self.is_hidden(name);
        self.keep(result.map_err(|mut error| {
            if hidden {
                let placeholder = format!("`{}`", redact::placeholder(name));
                for quoted in [value, value.trim()] {
                    error.message = error.message.replace(&format!("`{quoted}`"), &placeholder);
                }
            }
            error
        }))
    }

    pub(super) fn int(&mut self, name: &str, value: &str) -> Option<i64> {
        self.parsed(name, value, env::parse_i64(name, value))
    }

    pub(super) fn uint(&mut self, name: &str, value: &str) -> Option<u64> {
        self.parsed(name, value, env::parse_u64(name, value))
    }

    /// A finite, non-negative decimal number (`10`, `0.5`).
    pub(super) fn float(&mut self, name: &str, value: &str) -> Option<f64> {
        self.parsed(name, value, env::parse_f64(name, value))
    }

    /// A whole number that the gateway config holds in 32 bits (weights, attempts, counts).
    pub(super) fn u32(&mut self, name: &str, value: &str) -> Option<u32> {
        let n = self.uint(name, value)?;
        let n = u32::try_from(n).ok();
        if n.is_none() {
            let quoted = self.quote(name, value);
            self.error(
                name,
                format!("`{quoted}` is too large (at most {})", u32::MAX),
            );
        }
        n
    }

    pub(super) fn bool_or(&mut self, name: &str, default: bool) -> bool {
        match self.get(name) {
            None => default,
            Some(v) => self
                .parsed(name, v, env::parse_bool(name, v))
                .unwrap_or(default),
        }
    }

    pub(super) fn uint_or(&mut self, name: &str, default: u64) -> u64 {
        match self.get(name) {
            None => default,
            Some(v) => self.uint(name, v).unwrap_or(default),
        }
    }

    pub(super) fn u32_or(&mut self, name: &str, default: u32) -> u32 {
        match self.get(name) {
            None => default,
            Some(v) => self.u32(name, v).unwrap_or(default),
        }
    }

    fn duration_or(&mut self, name: &str, default: Duration) -> Duration {
        match self.get(name) {
            None => default,
            Some(v) => self
                .parsed(name, v, env::parse_seconds(name, v))
                .unwrap_or(default),
        }
    }

    /// Seconds (number or with unit) rendered to the millisecond: `60s`, or `250ms` when not
    /// whole seconds.
    pub(super) fn seconds_or(&mut self, name: &str, default: Duration) -> String {
        format_seconds(self.duration_or(name, default))
    }

    /// [`Self::seconds_or`] for a timeout or an interval, which zero would make fail (or fire)
    /// at once; what renders as `0ms` is zero too.
    pub(super) fn nonzero_seconds_or(&mut self, name: &str, default: Duration) -> String {
        let duration = self.duration_or(name, default);
        if duration.as_millis() == 0 {
            self.error(name, "must be at least 1 ms");
        }
        format_seconds(duration)
    }
}
