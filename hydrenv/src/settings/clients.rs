//! `GATEWAY_CLIENT_<KEY>_<N>`: consumers, contiguous from 0, each with a name and a key, a lane
//! and an optional token quota.

use serde::Serialize;

use super::{Reader, SecretText};
use super::{checks, groups};
use crate::vars::CLIENT_KEYS;

#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub name: String,
    pub key: SecretText,
    pub lane: String,
    /// Tokens per `QUOTA_TIME_WINDOW` (the window is read with the other limits).
    pub token_quota: Option<u64>,
}

pub fn read(r: &mut Reader<'_>) -> Vec<Client> {
    let members = groups::collect(r.env, "GATEWAY_CLIENT_", CLIENT_KEYS, &[], &mut r.errors);
    let mut clients = Vec::new();
    for (expected, (index, vars)) in members.iter().enumerate() {
        if *index as usize != expected {
            let (first, _) = vars.values().next().copied().unwrap_or(("", ""));
            r.error(
                first,
                format!("client indexes must be contiguous from 0: index {expected} is missing before {index}"),
            );
            break;
        }
        let name = vars.get("NAME").map(|(_, v)| v.trim().to_owned());
        let key = vars.get("KEY").map(|(_, v)| *v);
        if name.as_deref().is_none_or(str::is_empty) {
            r.error(
                &format!("GATEWAY_CLIENT_NAME_{index}"),
                format!("missing: client {index} needs a name"),
            );
        }
        match key.filter(|k| !k.is_empty()) {
            None => r.error(
                &format!("GATEWAY_CLIENT_KEY_{index}"),
                format!("missing: client {index} needs a key"),
            ),
            Some(key) => {
                if let Err(why) = checks::client_key(key) {
                    r.error(&format!("GATEWAY_CLIENT_KEY_{index}"), why);
                }
            }
        }
        let lane = match vars
            .get("PRIORITY")
            .map(|(_, v)| v.trim().to_ascii_lowercase())
        {
            None => "high".to_owned(),
            Some(lane) if lane == "high" || lane == "low" => lane,
            Some(other) => {
                let lane_var = format!("GATEWAY_CLIENT_PRIORITY_{index}");
                let quoted = r.quote(&lane_var, &other);
                r.error(&lane_var, format!("`{quoted}` is not high or low"));
                "high".to_owned()
            }
        };
        let token_quota = vars
            .get("TOKEN_QUOTA")
            .filter(|(_, v)| !v.trim().is_empty())
            .and_then(|(quota_var, v)| match r.uint(quota_var, v) {
                Some(0) => {
                    r.error(
                        quota_var,
                        "must be greater than 0 (a quota of 0 refuses every request of this client; unset it for no quota)",
                    );
                    None
                }
                quota => quota,
            });
        clients.push(Client {
            name: vars
                .get("NAME")
                .map(|(n, v)| r.shown(n, v))
                .unwrap_or_default(),
            key: vars
                .get("KEY")
                .map_or_else(|| SecretText(String::new()), |(n, v)| r.secret(n, v)),
            lane,
            token_quota,
        });
    }
    clients
}
