//! Backend choice inside priority tiers: smooth weighted round-robin or consistent hashing with
//! bounded load. Both are precomputed at config load, so a pick is an atomic increment and a
//! short scan, without locks.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::Backend;
use crate::config::{BalancerConfig, GatewayConfig, HashOn};
use crate::ctx::RequestCtx;

/// Virtual nodes per unit of weight on the hash ring.
const VNODES_PER_WEIGHT: u32 = 64;

/// One priority tier.
#[derive(Debug)]
pub struct Tier {
    /// Backend indexes in this tier (config order).
    pub members: Vec<usize>,
    /// Smooth weighted round-robin sequence over `members` (indexes into the backend list).
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    /// Hash ring: (point, backend index), sorted by point.
    ring: Vec<(u64, usize)>,
}

/// The balancing plan for a config: tiers from highest priority to lowest.
#[derive(Debug)]
pub struct Balancer {
    pub tiers: Vec<Tier>,
    pub algorithm: BalancerConfig,
}

impl Balancer {
    pub fn new(config: &GatewayConfig) -> Self {
        let tiers = config
            .tiers()
            .into_iter()
            .map(|members| {
                let weights: Vec<(usize, u32)> = members
                    .iter()
                    .map(|&i| (i, config.backends[i].weight))
                    .collect();
                Tier {
                    schedule: smooth_schedule(&weights),
                    ring: ring(&weights, |i| &config.backends[i].name),
                    cursor: AtomicUsize::new(0),
                    members,
                }
            })
            .collect();
        Self {
            tiers,
            algorithm: config.balancer.clone(),
        }
    }

    /// Picks the next backend of `tier` that `excluded` does not rule out. `hash_key` is the
    /// request's key for consistent hashing (None falls back to round-robin).
    pub fn pick(
        &self,
        tier: &Tier,
        backends: &[Backend],
        hash_key: Option<&[u8]>,
        excluded: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if let (BalancerConfig::ConsistentHash { bounded_load, .. }, Some(key)) =
            (&self.algorithm, hash_key)
        {
            return pick_hashed(tier, backends, key, *bounded_load, &excluded);
        }
        if tier.schedule.is_empty() {
            return None;
        }
        let start = tier.cursor.fetch_add(1, Ordering::Relaxed);
        let len = tier.schedule.len();
        (0..len)
            .map(|offset| tier.schedule[(start + offset) % len])
            .find(|&i| !excluded(i))
    }

    /// Whether requests carry a hash key at all (consistent hashing configured).
    pub fn hash_on(&self) -> Option<&HashOn> {
        match &self.algorithm {
            BalancerConfig::ConsistentHash { on, .. } => Some(on),
            BalancerConfig::RoundRobin => None,
        }
    }

    /// The consistent-hash key of a request, when hashing is configured.
    pub fn hash_key(&self, ctx: &RequestCtx) -> Option<Vec<u8>> {
        let fields = &ctx.head.fields;
        match self.hash_on()? {
            HashOn::Consumer => ctx.consumer.as_ref().map(|c| c.name.as_bytes().to_vec()),
            HashOn::Header(name) => fields.get(name.as_str()).map(<[u8]>::to_vec),
            HashOn::Cookie(name) => fields
                .get_all("cookie")
                .filter_map(|v| std::str::from_utf8(v).ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_bytes().to_vec()),
            HashOn::RemoteAddr => Some(ctx.client.ip().to_string().into_bytes()),
        }
    }
}

fn pick_hashed(
    tier: &Tier,
    backends: &[Backend],
    key: &[u8],
    bounded_load: f64,
    excluded: &impl Fn(usize) -> bool,
) -> Option<usize> {
    if tier.ring.is_empty() {
        return None;
    }
    let eligible: Vec<usize> = tier
        .members
        .iter()
        .copied()
        .filter(|&i| !excluded(i))
        .collect();
    if eligible.is_empty() {
        return None;
    }
    let total: i64 = eligible
        .iter()
        .map(|&i| backends[i].state.in_flight())
        .sum();
    // Bounded load: nobody takes more than `bounded_load` x the average, counting this request.
    let limit = ((total + 1) as f64 * bounded_load / eligible.len() as f64).ceil() as i64;
    let point = hash64(key);
    let start = tier.ring.partition_point(|&(p, _)| p < point);
    let len = tier.ring.len();
    let mut first_eligible = None;
    for offset in 0..len {
        let (_, i) = tier.ring[(start + offset) % len];
        if excluded(i) {
            continue;
        }
        first_eligible.get_or_insert(i);
        if backends[i].state.in_flight() < limit {
            return Some(i);
        }
    }
    first_eligible
}

/// The nginx smooth weighted round-robin order, unrolled over one full cycle.
fn smooth_schedule(weights: &[(usize, u32)]) -> Vec<usize> {
    let divisor = weights
        .iter()
        .map(|&(_, w)| w)
        .filter(|&w| w > 0)
        .fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    let reduced: Vec<(usize, i64)> = weights
        .iter()
        .map(|&(i, w)| (i, i64::from(w / divisor)))
        .collect();
    let total: i64 = reduced.iter().map(|&(_, w)| w).sum();
    // Very large weight sums are scaled down to keep the table small; ratios stay close.
    let cap = 4096;
    let reduced: Vec<(usize, i64)> = if total > cap {
        reduced
            .iter()
            .map(|&(i, w)| (i, if w == 0 { 0 } else { (w * cap / total).max(1) }))
            .collect()
    } else {
        reduced
    };
    let total: i64 = reduced.iter().map(|&(_, w)| w).sum();
    let mut current = vec![0i64; reduced.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (slot, &(_, w)) in reduced.iter().enumerate() {
            current[slot] += w;
            if current[slot] > current[best] {
                best = slot;
            }
        }
        current[best] -= total;
        schedule.push(reduced[best].0);
    }
    schedule
}

fn ring<'a>(weights: &[(usize, u32)], name: impl Fn(usize) -> &'a str) -> Vec<(u64, usize)> {
    let mut ring = Vec::new();
    for &(i, w) in weights {
        for v in 0..w.saturating_mul(VNODES_PER_WEIGHT).min(64 * 1024) {
            let mut key = name(i).as_bytes().to_vec();
            key.extend_from_slice(&v.to_le_bytes());
            ring.push((hash64(&key), i));
        }
    }
    ring.sort_unstable();
    ring
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// FNV-1a followed by a murmur finaliser: stable across processes and releases, well mixed.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_interleaves_by_weight() {
        assert_eq!(
            smooth_schedule(&[(0, 5), (1, 1), (2, 1)]),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
        assert_eq!(smooth_schedule(&[(0, 2), (1, 1)]), vec![0, 1, 0]);
        assert_eq!(smooth_schedule(&[(0, 4), (1, 2)]), vec![0, 1, 0]);
        assert_eq!(smooth_schedule(&[(0, 0), (1, 3)]), vec![1]);
        assert!(smooth_schedule(&[(0, 0)]).is_empty());
    }

    #[test]
    fn ring_spreads_keys_over_backends() {
        let names = ["a", "b", "c"];
        let ring = ring(&[(0, 1), (1, 1), (2, 1)], |i| names[i]);
        let mut counts = [0usize; 3];
        for k in 0..3000u32 {
            let point = hash64(&k.to_le_bytes());
            let at = ring.partition_point(|&(p, _)| p < point) % ring.len();
            counts[ring[at].1] += 1;
        }
        assert!(counts.iter().all(|&c| c > 600), "{counts:?}");
    }
}
