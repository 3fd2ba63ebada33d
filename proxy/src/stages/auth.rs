//! Client authentication: which consumer (if any) sent the request.
//!
//! Keys are compared as SHA-256 digests: the presented key's digest is looked up among the
//! consumers' digests (sorted, a binary search: a platform with hundreds of consumers pays a few
//! comparisons per request, not one per consumer), and the one candidate is then compared in
//! constant time. What the search's timing could tell is how a digest orders against the
//! consumers' digests, which says nothing about any key; the key's length does not show, and
//! "unknown" and "wrong" look alike.

pub mod config;

use std::sync::Arc;

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use crate::config::{ClientsConfig, GatewayConfig, Lane};
use crate::ctx::{Flow, RequestCtx};
use crate::error::GatewayError;
use crate::http1::RawFields;
use crate::stages::Stage;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub name: Arc<str>,
    pub lane: Lane,
    /// Tokens per `limits.quota.window`, if the consumer has a quota.
    pub token_quota: Option<u64>,
    /// Its place in `clients.consumers` (the limits stage finds its buckets by it).
    pub slot: usize,
}

struct KnownKey {
    digest: [u8; 32],
    consumer: Consumer,
}

impl std::fmt::Debug for KnownKey {
    /// The consumer only: a digest of a short key can be searched for the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKey")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The client-auth stage, built once per config.
#[derive(Debug)]
pub struct ClientAuth {
    require: bool,
    /// Sorted by digest (keys are unique: the config refuses a key given twice).
    keys: Vec<KnownKey>,
}

impl Stage for ClientAuth {
    fn new(config: &GatewayConfig, _previous: Option<&Self>) -> Self {
        Self::for_clients(&config.clients)
    }

    async fn check(&self, ctx: &mut RequestCtx) -> Flow {
        let consumer = self.authenticate(&ctx.head.fields)?;
        // The consumer's lane, which `x-priority: low` (or, in test mode, the
        // `/prioritization-simple` route) may lower but nothing raises.
        let low = ctx
            .head
            .fields
            .get("x-priority")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"low"))
            || (ctx.route.is_some_and(|r| r.test_prefixed)
                && ctx.path().starts_with("/prioritization-simple/"));
        ctx.lane = match consumer.as_ref() {
            _ if low => Lane::Low,
            Some(consumer) => consumer.lane,
            None => Lane::High,
        };
        ctx.consumer = consumer;
        Ok(())
    }
}

impl ClientAuth {
    pub fn for_clients(config: &ClientsConfig) -> Self {
        let mut keys = config
            .consumers
            .iter()
            .enumerate()
            .map(|(slot, c)| KnownKey {
                digest: sha256(c.key.expose().as_bytes()),
                consumer: Consumer {
                    name: c.name.clone(),
                    lane: c.lane,
                    token_quota: c.token_quota,
                    slot,
                },
            })
            .collect::<Vec<_>>();
        keys.sort_by_key(|known| known.digest);
        Self {
            require: config.require_auth,
            keys,
        }
    }

    /// Identifies the consumer. Without `require_auth`, a missing or unknown key is anonymous.
    pub fn authenticate(&self, headers: &RawFields) -> Result<Option<Consumer>, GatewayError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let Some(presented) = presented_key(headers) else {
            return if self.require {
                Err(GatewayError::Unauthorized { missing: true })
            } else {
                Ok(None)
            };
        };
        let presented = sha256(presented);
        // The nearest digest, then a comparison of every byte of it.
        let at = self
            .keys
            .partition_point(|known| known.digest < presented)
            .min(self.keys.len() - 1);
        let candidate = &self.keys[at];
        let found = digests_equal(&candidate.digest, &presented).then_some(&candidate.consumer);
        match found {
            Some(consumer) => Ok(Some(consumer.clone())),
            None if self.require => Err(GatewayError::Unauthorized { missing: false }),
            None => Ok(None),
        }
    }
}

/// The key a client presented: `Authorization: Bearer`, then `api-key`, then the APIM header.
fn presented_key(headers: &RawFields) -> Option<&[u8]> {
    if let Some(bytes) = headers.get("authorization")
        && bytes.len() > 7
        && bytes[..7].eq_ignore_ascii_case(b"bearer ")
    {
        let key = bytes[7..].trim_ascii();
        if !key.is_empty() {
            return Some(key);
        }
    }
    ["api-key", "ocp-apim-subscription-key"]
        .iter()
        .find_map(|name| {
            headers
                .get(name)
                .map(|v| v.trim_ascii())
                .filter(|v| !v.is_empty())
        })
}

/// Compares two digests in constant time (`subtle`), touching every byte whatever they hold:
/// as four words, each compared without a branch (a per-byte comparison costs eight times the
/// barriers for the same guarantee).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let words = |digest: &[u8; 32]| -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(word)
        })
    };
    words(a).ct_eq(&words(b)).into()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsumerConfig;
    use crate::secret::Secret;

    fn auth(require: bool) -> ClientAuth {
        ClientAuth::for_clients(&ClientsConfig {
            require_auth: require,
            consumers: vec![ConsumerConfig {
                name: "team-a".into(),
                key: Secret::new("key-a"),
                lane: Lane::High,
                token_quota: None,
            }],
        })
    }

    #[test]
    fn debug_output_names_consumers_but_not_their_key_digests() {
        let shown = format!("{:?}", auth(true));
        assert!(shown.contains("team-a"), "{shown}");
        assert!(!shown.contains("digest"), "{shown}");
        let digest = sha256(b"key-a");
        assert!(
            !shown.contains(&format!("{:?}", &digest[..4])[1..8]),
            "{shown}"
        );
    }

    #[test]
    fn each_of_many_consumers_is_found_by_its_own_key_and_only_by_it() {
        let consumers = (0..300)
            .map(|i| ConsumerConfig {
                name: format!("team-{i}").into(),
                key: Secret::new(format!("key-{i}")),
                lane: Lane::High,
                token_quota: None,
            })
            .collect();
        let auth = ClientAuth::for_clients(&ClientsConfig {
            require_auth: true,
            consumers,
        });
        for i in 0..300 {
            let key = format!("key-{i}");
            let found = auth.authenticate(&headers(&[("api-key", &key)])).unwrap();
            assert_eq!(&*found.unwrap().name, format!("team-{i}"));
        }
        for wrong in ["key-300", "key-", "", "KEY-1", "key-10x", "x"] {
            assert!(
                auth.authenticate(&headers(&[("api-key", wrong)])).is_err(),
                "{wrong:?} accepted"
            );
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> RawFields {
        RawFields::from_pairs(pairs)
    }

    #[test]
    fn accepts_each_header_form() {
        let auth = auth(true);
        for h in [
            headers(&[("Authorization", "Bearer key-a")]),
            headers(&[("api-key", "key-a")]),
            headers(&[("ocp-apim-subscription-key", "key-a")]),
        ] {
            assert_eq!(&*auth.authenticate(&h).unwrap().unwrap().name, "team-a");
        }
    }

    #[test]
    fn rejects_missing_and_wrong_when_required() {
        let auth = auth(true);
        assert!(matches!(
            auth.authenticate(&RawFields::default()),
            Err(GatewayError::Unauthorized { missing: true })
        ));
        assert!(matches!(
            auth.authenticate(&headers(&[("api-key", "nope")])),
            Err(GatewayError::Unauthorized { missing: false })
        ));
    }

    #[test]
    fn anonymous_when_not_required() {
        assert!(
            auth(false)
                .authenticate(&headers(&[("api-key", "nope")]))
                .unwrap()
                .is_none()
        );
    }
}
