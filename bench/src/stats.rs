//! Percentiles (nearest rank) of microsecond samples, as JSON.

use serde_json::{Value, json};

/// `count`, `mean`, `p50`, `p90`, `p99`, `p999` and `max` of `samples` (µs); nulls when empty.
pub fn summary(mut samples: Vec<u64>) -> Value {
    if samples.is_empty() {
        return json!({"count": 0, "mean": null, "p50": null, "p90": null, "p99": null,
                      "p999": null, "max": null});
    }
    samples.sort_unstable();
    let n = samples.len();
    // Nearest rank in integers (`per_10k` = percentile × 100), free of float rounding.
    let at = |per_10k: usize| {
        let rank = (per_10k * n).div_ceil(10_000);
        samples[rank.clamp(1, n) - 1]
    };
    let mean = samples.iter().sum::<u64>() as f64 / n as f64;
    json!({
        "count": n,
        "mean": (mean * 10.0).round() / 10.0,
        "p50": at(5_000),
        "p90": at(9_000),
        "p99": at(9_900),
        "p999": at(9_990),
        "max": samples[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let value = summary((1..=1000).rev().collect());
        assert_eq!(value["p50"], 500);
        assert_eq!(value["p99"], 990);
        assert_eq!(value["p999"], 999);
        assert_eq!(value["max"], 1000);
        assert_eq!(summary(vec![7])["p99"], 7);
        assert!(summary(Vec::new())["p50"].is_null());
    }
}
