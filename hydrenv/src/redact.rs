//! Keeping values out of what hydrenv prints: the `<redacted:VARIABLE>` placeholder, user names
//! and passwords masked in URLs, and secret values replaced in error text.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::env::Env;

/// What a hidden value is shown as in dry runs, diffs, `explain` and `check`.
pub fn placeholder(variable: &str) -> String {
    format!("<redacted:{variable}>")
}

/// `scheme://user:password@host/...` → `scheme://***@host/...`; a text without `://` is read as
/// starting with an authority (`user:pw@host` → `***@host`). Any value may be a URL that carries
/// credentials, so every value hydrenv shows without redacting it whole goes through this.
pub fn mask_userinfo(text: &str) -> Cow<'_, str> {
    const AUTHORITY_ENDS: [char; 10] = ['/', '?', '#', ' ', ')', ';', ',', '"', '\'', '\n'];
    let starts: Vec<usize> = if text.contains("://") {
        text.match_indices("://").map(|(i, _)| i + 3).collect()
    } else {
        vec![0]
    };
    let mut masked = String::new();
    let mut copied = 0;
    for start in starts {
        if start < copied {
            continue;
        }
        let end = text[start..]
            .find(AUTHORITY_ENDS)
            .map_or(text.len(), |i| start + i);
        if let Some(at) = text[start..end].rfind('@').filter(|at| *at > 0) {
            masked.push_str(&text[copied..start]);
            masked.push_str("***");
            copied = start + at;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    masked.push_str(&text[copied..]);
    Cow::Owned(masked)
}

/// Error text with the value of every variable in `hidden` replaced by its placeholder (values
/// shorter than 3 characters would replace ordinary words), and URL userinfo masked.
pub fn text(message: &str, env: &Env, hidden: &BTreeSet<&str>) -> String {
    let mut out = message.to_owned();
    for name in hidden {
        if let Some(value) = env.get(*name).filter(|v| v.trim().len() >= 3) {
            out = out.replace(value.as_str(), &placeholder(name));
            let trimmed = value.trim();
            if trimmed != value {
                out = out.replace(trimmed, &placeholder(name));
            }
        }
    }
    mask_userinfo(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo_wherever_a_url_carries_it() {
        assert_eq!(mask_userinfo("https://eus.example"), "https://eus.example");
        assert_eq!(
            mask_userinfo("http://user:pw@host:80/p?q"),
            "http://***@host:80/p?q"
        );
        assert_eq!(mask_userinfo("user:pw@host"), "***@host");
        assert_eq!(
            mask_userinfo("redis://:pw@r1:6379 and https://a:b@c/x"),
            "redis://***@r1:6379 and https://***@c/x"
        );
        assert_eq!(
            mask_userinfo(
                "@Microsoft.KeyVault(SecretUri=https://u:p@kv.vault.azure.net/secrets/a)"
            ),
            "@Microsoft.KeyVault(SecretUri=https://***@kv.vault.azure.net/secrets/a)"
        );
        assert_eq!(mask_userinfo("team@example.com"), "***@example.com");
        assert_eq!(mask_userinfo("no url here"), "no url here");
        assert_eq!(
            mask_userinfo("https://host/path@not-userinfo"),
            "https://host/path@not-userinfo"
        );
    }
}
