//! The limit counters: what the limits stage ([`crate::stages::limits`]) asks before a request
//! and settles after it. Two rules cover every limit:
//!
//! - [`Rule::Rate`]: GCRA (a leaky bucket kept as one "theoretical arrival time" per key, no
//!   timer): a request is let through while the bucket's backlog is within the burst tolerance.
//! - [`Rule::Window`]: a fixed window that starts with a bucket's first request (as APISIX's
//!   counters do) and a counter of what is *committed* in it: units already used plus units
//!   reserved by requests still in flight. A request is admitted while the committed count is
//!   below the limit, and then reserves its cost; settlement replaces the reservation with what
//!   the request really used. So concurrent requests can overshoot a limit by at most one
//!   request's reservation, never by the number of requests in flight.
//!
//! A request's checks are asked together and are all-or-nothing: when one refuses, none of the
//! others is charged (a refused request costs its client nothing). In process, each counter is
//! one atomic updated by compare-and-swap; in Redis, one script call answers all of a
//! request's checks atomically (one round trip), and settlement is a second script sent off the
//! response path.

mod local;
mod redis;
mod resp;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::config::{Lane, RedisConfig};
use crate::stages::route::{Family, Operation};

pub use local::{Bucket, Local};
pub use redis::RedisStore;

/// At most this many checks per request: rate, quota, tokens, token quota.
pub const MOST_CHECKS: usize = 4;

/// A request's checks, grants or charges, held inline (no allocation per request).
pub type PerRequest<T> = smallvec::SmallVec<[T; MOST_CHECKS]>;

/// What a counter counts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The request rate of a client address.
    Rate(IpAddr),
    /// The request quota of a consumer (or of an address without a known key).
    Quota(Who),
    /// A token limit's bucket: a route or a consumer, and a lane.
    Tokens(Scope, Lane),
    /// A consumer's token quota.
    TokenQuota(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    Consumer(Arc<str>),
    Address(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Route {
        family: Family,
        operation: Operation,
        test: bool,
    },
    /// `None`: requests without a known key, one bucket for all of them.
    Consumer(Option<Arc<str>>),
}

impl Key {
    /// The Redis key. Every key carries the hash tag `{gw}`, so one request's keys share a slot
    /// (a script may only touch keys of one slot on a clustered endpoint). Free text (a consumer
    /// name) always comes last, so two keys can never spell the same name.
    pub fn redis_name(&self) -> RedisName<'_> {
        RedisName(self)
    }
}

/// A key's name in Redis ([`Key::redis_name`]), written where it is needed (into the command
/// being built: no string of its own).
pub struct RedisName<'a>(&'a Key);

impl RedisName<'_> {
    /// Writes the name's bytes, without the formatting machinery but for an IPv6 address
    /// (through it, the names of a request's admission and settlement cost ~2 700 instructions,
    /// 900 of them the IPv4 address's `Display`; callgrind, docs/benchmarks.md "Guardrails").
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let lane = |lane: &Lane| match lane {
            Lane::High => &b"high"[..],
            Lane::Low => b"low",
        };
        let mut parts = |parts: &[&[u8]]| parts.iter().try_for_each(|part| out.write_all(part));
        match self.0 {
            Key::Rate(ip) => {
                parts(&[b"{gw}:rate:"])?;
                write_ip(out, ip)
            }
            Key::Quota(Who::Address(ip)) => {
                parts(&[b"{gw}:quota:a:"])?;
                write_ip(out, ip)
            }
            Key::Quota(Who::Consumer(name)) => parts(&[b"{gw}:quota:c:", name.as_bytes()]),
            Key::Tokens(
                Scope::Route {
                    family,
                    operation,
                    test,
                },
                l,
            ) => parts(&[
                b"{gw}:tok:r:",
                lane(l),
                b":",
                family.label().as_bytes(),
                b":",
                operation.label().as_bytes(),
                if *test { b":test" } else { b":-" },
            ]),
            Key::Tokens(Scope::Consumer(None), l) => parts(&[b"{gw}:tok:a:", lane(l)]),
            Key::Tokens(Scope::Consumer(Some(name)), l) => {
                parts(&[b"{gw}:tok:c:", lane(l), b":", name.as_bytes()])
            }
            Key::TokenQuota(name) => parts(&[b"{gw}:tq:", name.as_bytes()]),
        }
    }
}

/// An address as its `Display` writes it (an IPv4 one without the formatting machinery).
fn write_ip(out: &mut impl std::io::Write, ip: &IpAddr) -> std::io::Result<()> {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b".")?;
                }
                out.write_all(digits.format(octet).as_bytes())?;
            }
            Ok(())
        }
        IpAddr::V6(v6) => write!(out, "{v6}"),
    }
}

impl std::fmt::Display for RedisName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut name = Vec::new();
        self.write_to(&mut name).map_err(|_| std::fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&name))
    }
}

/// How a counter decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// GCRA: one request per `interval_us`, `tolerance_us` of backlog allowed (burst × interval).
    Rate { interval_us: u64, tolerance_us: u64 },
    /// At most `limit` units committed per window of `window_us`.
    Window { limit: u64, window_us: u64 },
}

/// One counter a request must pass, and what it costs there (a window's reservation; a rate
/// always costs one request).
#[derive(Debug, Clone)]
pub struct Check<'a> {
    pub key: Key,
    pub rule: Rule,
    pub cost: u64,
    /// In process, for a key the config bounds: where the limits stage keeps its bucket once
    /// found, so that a request does not look it up again (Redis ignores it).
    pub slot: Option<&'a BucketSlot>,
}

/// A bounded key's in-process bucket, found on first use ([`Check::slot`]).
pub type BucketSlot = std::sync::OnceLock<Arc<Bucket>>;

/// The answer to a request's checks.
#[derive(Debug)]
pub enum Verdict {
    /// Every check let it through: one grant per check, in order.
    Admitted(PerRequest<Granted>),
    /// The check at `index` refused; it may pass again after `retry_us`.
    Refused { index: usize, retry_us: u64 },
}

/// What a check granted.
#[derive(Debug)]
pub struct Granted {
    /// Units (requests or tokens) left in the window, or requests the bucket takes at once.
    pub remaining: u64,
    /// Until the window ends, or until the rate bucket is empty again.
    pub reset_us: u64,
    /// What settlement needs to find the reservation again.
    pub ticket: Ticket,
}

/// Which window a reservation was made in.
#[derive(Debug, Clone)]
pub enum Ticket {
    /// A rate check: nothing to settle.
    Rate,
    /// The in-process bucket and window.
    Local(local::Held),
    /// The Redis window, by its start (µs, Redis time).
    Redis { start_us: u64 },
}

/// One reservation to settle: `reserved` units made in the window of `ticket` become `actual`.
#[derive(Debug, Clone)]
pub struct Charge {
    pub key: Key,
    pub window_us: u64,
    pub reserved: u64,
    pub actual: u64,
    pub ticket: Ticket,
}

/// Why the store could not answer (the configured failure policy then decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// No connection (Redis down, or not reached yet); reconnecting in the background.
    Down,
    /// No answer within `limits.redis.timeout`.
    Timeout,
    /// Redis answered with an error, or with something the gateway's scripts never return.
    Failed,
}

impl StoreError {
    pub fn label(self) -> &'static str {
        match self {
            StoreError::Down => "down",
            StoreError::Timeout => "timeout",
            StoreError::Failed => "error",
        }
    }
}

/// Where the counters live.
#[derive(Debug)]
pub enum LimitStore {
    /// This process only (one replica).
    InProcess(Local),
    /// Shared by every replica.
    Redis(Arc<RedisStore>),
}

impl LimitStore {
    /// The store for `redis` (none: in process). A Redis store starts connecting in the
    /// background at once and answers [`StoreError::Down`] until it is connected.
    pub fn new(redis: Option<&RedisConfig>) -> Self {
        match redis {
            None => LimitStore::InProcess(Local::new()),
            Some(config) => LimitStore::Redis(RedisStore::start(config)),
        }
    }

    /// Whether this store is what `redis` would build (a reload keeps it then).
    pub fn fits(&self, redis: Option<&RedisConfig>) -> bool {
        match (self, redis) {
            (LimitStore::InProcess(_), None) => true,
            (LimitStore::Redis(store), Some(config)) => store.fits(config),
            _ => false,
        }
    }

    /// Asks every check at once (all or nothing).
    pub async fn admit(&self, checks: &[Check<'_>]) -> Result<Verdict, StoreError> {
        match self {
            LimitStore::InProcess(local) => Ok(local.admit(checks)),
            LimitStore::Redis(store) => store.admit(checks).await,
        }
    }
}

/// Microseconds of a duration, for the rules (saturating).
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A compare-and-swap update of a counter; returns the value it replaced.
fn update(counter: &AtomicU64, f: impl Fn(u64) -> u64) -> u64 {
    use std::sync::atomic::Ordering::{AcqRel, Acquire};
    match counter.fetch_update(AcqRel, Acquire, |value| Some(f(value))) {
        Ok(previous) | Err(previous) => previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_names_are_distinct_for_distinct_keys_and_carry_the_hash_tag() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let keys = [
            Key::Rate(ip),
            Key::Quota(Who::Address(ip)),
            Key::Quota(Who::Consumer("10.0.0.1".into())),
            Key::Tokens(Scope::Consumer(None), Lane::High),
            Key::Tokens(Scope::Consumer(None), Lane::Low),
            Key::Tokens(Scope::Consumer(Some("a".into())), Lane::High),
            Key::Tokens(Scope::Consumer(Some("high:a".into())), Lane::Low),
            Key::Tokens(
                Scope::Route {
                    family: Family::V1,
                    operation: Operation::ChatCompletions,
                    test: false,
                },
                Lane::High,
            ),
            Key::Tokens(
                Scope::Route {
                    family: Family::V1,
                    operation: Operation::ChatCompletions,
                    test: true,
                },
                Lane::High,
            ),
            Key::TokenQuota("a".into()),
        ];
        let names: std::collections::HashSet<String> =
            keys.iter().map(|k| k.redis_name().to_string()).collect();
        assert_eq!(names.len(), keys.len());
        assert!(names.iter().all(|n| n.starts_with("{gw}:")));
    }

    /// The names as Redis holds them (a gateway of another version finds the same counters).
    #[test]
    fn redis_names_are_spelled_as_they_always_were() {
        let v4: IpAddr = "10.0.0.255".parse().unwrap();
        let v6: IpAddr = "2001:db8::ff:1".parse().unwrap();
        let route = |test| Scope::Route {
            family: Family::Legacy,
            operation: Operation::ChatCompletions,
            test,
        };
        let cases = [
            (Key::Rate(v4), "{gw}:rate:10.0.0.255"),
            (Key::Rate(v6), "{gw}:rate:2001:db8::ff:1"),
            (Key::Rate("0.0.0.0".parse().unwrap()), "{gw}:rate:0.0.0.0"),
            (Key::Quota(Who::Address(v4)), "{gw}:quota:a:10.0.0.255"),
            (
                Key::Quota(Who::Consumer("team a".into())),
                "{gw}:quota:c:team a",
            ),
            (
                Key::Tokens(route(false), Lane::High),
                "{gw}:tok:r:high:legacy:chat_completions:-",
            ),
            (
                Key::Tokens(route(true), Lane::Low),
                "{gw}:tok:r:low:legacy:chat_completions:test",
            ),
            (
                Key::Tokens(Scope::Consumer(None), Lane::Low),
                "{gw}:tok:a:low",
            ),
            (
                Key::Tokens(Scope::Consumer(Some("ü".into())), Lane::High),
                "{gw}:tok:c:high:ü",
            ),
            (Key::TokenQuota("b".into()), "{gw}:tq:b"),
        ];
        for (key, name) in cases {
            assert_eq!(key.redis_name().to_string(), name);
            let mut bytes = Vec::new();
            key.redis_name().write_to(&mut bytes).unwrap();
            assert_eq!(bytes, name.as_bytes());
        }
        for ip in ["1.2.3.4", "255.255.255.255", "::1", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut bytes = Vec::new();
            write_ip(&mut bytes, &ip).unwrap();
            assert_eq!(bytes, ip.to_string().as_bytes());
        }
    }
}
