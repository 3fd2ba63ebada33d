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

/// Error text with the value of every variable in `hidden` replaced by its placeholder, and URL
/// userinfo masked. A message may quote a value transformed, so each form of it is replaced
/// ([`forms`]), in any ASCII case (a choice is lowercased before it is compared). Values shorter
/// than 3 characters are left: they would replace ordinary words. This is the net under every
/// message; the reader quotes a hidden variable as its placeholder in the first place.
pub fn text(message: &str, env: &Env, hidden: &BTreeSet<&str>) -> String {
    let mut out = message.to_owned();
    for name in hidden {
        let Some(value) = env.get(*name).filter(|v| v.trim().len() >= 3) else {
            continue;
        };
        let placeholder = placeholder(name);
        for form in forms(value) {
            out = replace_ignore_ascii_case(&out, &form, &placeholder);
        }
    }
    mask_userinfo(&out).into_owned()
}

/// The forms in which a message may quote `value`: as given, trimmed, escaped like `{:?}` and
/// `escape_debug` write it, with its URL userinfo masked, and as the proxy's parser quotes an
/// endpoint (no query); longest first, so that a form inside another one leaves no rest behind.
fn forms(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    let masked = mask_userinfo(trimmed);
    let mut forms = vec![
        value.to_owned(),
        trimmed.to_owned(),
        value.escape_debug().to_string(),
        trimmed.escape_debug().to_string(),
        masked.escape_debug().to_string(),
        masked.into_owned(),
    ];
    let endpoint = proxy::config::backends::shown_endpoint(value);
    // `https://***`: the proxy could not tell the host, and neither could this replace it.
    if !endpoint.ends_with("***") {
        forms.push(endpoint);
    }
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// `text` with every occurrence of `needle`, in any ASCII case, replaced by `with`.
fn replace_ignore_ascii_case(text: &str, needle: &str, with: &str) -> String {
    // ASCII case mapping keeps every byte offset, so offsets in the lowercase copy hold in `text`.
    let lowercase = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in lowercase.match_indices(&needle.to_ascii_lowercase()) {
        out.push_str(&text[copied..at]);
        out.push_str(with);
        copied = at + needle.len();
    }
    out.push_str(&text[copied..]);
    out
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

    #[test]
    fn a_hidden_value_is_replaced_in_every_form_a_message_quotes_it() {
        let env: Env = [
            ("LB_HASH_ON", " Header-S3cret\t2 "),
            (
                "AZURE_OPENAI_ENDPOINT_0",
                "https://u:pw@eus.example/Path-S3cret?sig=Q-S3cret",
            ),
            ("SHORT", "ab"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let hidden = BTreeSet::from(["LB_HASH_ON", "AZURE_OPENAI_ENDPOINT_0", "SHORT"]);
        for (message, expected) in [
            ("`header-s3cret\t2`", "`<redacted:LB_HASH_ON>`"),
            ("`HEADER-S3CRET\t2`", "`<redacted:LB_HASH_ON>`"),
            (r"`Header-S3cret\t2`", "`<redacted:LB_HASH_ON>`"),
            (r"`header-s3cret\t2 `", "`<redacted:LB_HASH_ON> `"),
            (
                "`https://***@eus.example/Path-S3cret?sig=Q-S3cret` x",
                "`<redacted:AZURE_OPENAI_ENDPOINT_0>` x",
            ),
            (
                "`https://***@EUS.example/path-s3cret`",
                "`<redacted:AZURE_OPENAI_ENDPOINT_0>`",
            ),
            (
                "backends[0].endpoint: `https://***@eus.example/Path-S3cret` has a query",
                "backends[0].endpoint: `<redacted:AZURE_OPENAI_ENDPOINT_0>` has a query",
            ),
            ("about a cab", "about a cab"),
        ] {
            assert_eq!(text(message, &env, &hidden), expected, "{message}");
        }
    }
}
