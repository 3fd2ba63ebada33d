//! Indexed and sequential variable groups (`AZURE_OPENAI_<KEY>_<N>`, `GATEWAY_CLIENT_<KEY>_<N>`),
//! with typo protection: an unknown key is an error that suggests the closest known one.

use std::collections::BTreeMap;

use crate::env::{Env, EnvError};

/// Members of one group: index → key → (variable name, value).
pub type Members<'a> = BTreeMap<u32, BTreeMap<&'static str, (&'a str, &'a str)>>;

/// Collects `<prefix><KEY>_<N>` variables. Unknown keys and unindexed names under the prefix
/// (other than `globals`) are errors.
pub fn collect<'a>(
    env: &'a Env,
    prefix: &str,
    keys: &[&'static str],
    globals: &[&str],
    errors: &mut Vec<EnvError>,
) -> Members<'a> {
    let mut members = Members::new();
    for (name, value) in env.range(prefix.to_owned()..) {
        let Some(rest) = name.strip_prefix(prefix) else {
            break;
        };
        if globals.contains(&name.as_str()) {
            continue;
        }
        let Some((key, index)) = rest.rsplit_once('_').filter(|(_, i)| is_index(i)) else {
            let hint = keys
                .iter()
                .find(|k| **k == rest)
                .map(|k| format!(" (did you mean {prefix}{k}_0?)"))
                .unwrap_or_default();
            errors.push(EnvError::new(
                name,
                format!("not a known variable: group variables end in an index, like {prefix}ENDPOINT_0{hint}")
                    .replace("ENDPOINT", keys[0]),
            ));
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            errors.push(EnvError::new(name, "index is too large"));
            continue;
        };
        match keys.iter().find(|k| **k == key) {
            Some(known) => {
                members
                    .entry(index)
                    .or_default()
                    .insert(known, (name.as_str(), value.as_str()));
            }
            None => {
                let closest = closest(key, keys);
                errors.push(EnvError::new(
                    name,
                    format!("unknown key `{key}` (did you mean {prefix}{closest}_{index}?)"),
                ));
            }
        }
    }
    members
}

fn is_index(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The known key with the smallest edit distance (Levenshtein, `strsim`).
fn closest<'k>(key: &str, keys: &[&'k str]) -> &'k str {
    keys.iter()
        .min_by_key(|k| strsim::levenshtein(key, k))
        .copied()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(
            closest("ENDPIONT", &["ENDPOINT", "KEY", "NAME"]),
            "ENDPOINT"
        );
        assert_eq!(closest("WIEGHT", &["WEIGHT", "KEY", "NAME"]), "WEIGHT");
        assert_eq!(
            closest("TOKEN_RESOURSE", crate::vars::BACKEND_KEYS),
            "TOKEN_RESOURCE"
        );
    }

    #[test]
    fn collects_members_and_reports_unknown_keys() {
        let env: Env = [
            ("AZURE_OPENAI_ENDPOINT_0", "https://a"),
            ("AZURE_OPENAI_ENDPIONT_2", "https://b"),
            ("AZURE_OPENAI_ENDPOINT", "https://c"),
            ("AZURE_OPENAI_TOKEN_RESOURCE", "x"),
            ("OTHER", "y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut errors = Vec::new();
        let members = collect(
            &env,
            "AZURE_OPENAI_",
            &["ENDPOINT", "KEY"],
            &["AZURE_OPENAI_TOKEN_RESOURCE"],
            &mut errors,
        );
        assert_eq!(members.len(), 1);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "AZURE_OPENAI_ENDPIONT_2: unknown key `ENDPIONT` (did you mean AZURE_OPENAI_ENDPOINT_2?)",
                "AZURE_OPENAI_ENDPOINT: not a known variable: group variables end in an index, like AZURE_OPENAI_ENDPOINT_0 (did you mean AZURE_OPENAI_ENDPOINT_0?)",
            ]
        );
    }
}
