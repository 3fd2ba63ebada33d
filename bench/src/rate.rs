//! Open-loop load: requests leave on a fixed schedule whatever the server does, and each latency
//! runs from the scheduled send time. A server that falls behind shows its queue in the
//! percentiles instead of quietly slowing the client down (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::stats::summary;
use crate::target::{Target, TargetArgs};

#[derive(clap::Args, Debug)]
pub struct RateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Requests per second.
    #[arg(long)]
    pub rate: f64,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Seconds of load before measuring (connections open, caches warm).
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// A request due while this many are in flight is not sent and counts as an error.
    #[arg(long, default_value_t = 8192)]
    pub max_in_flight: usize,
    /// Per-request timeout in milliseconds (an error).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// An answer that is not 2xx.
    Status,
    Transport,
    Timeout,
    /// Not sent: too many in flight.
    Dropped,
}

struct Sample {
    measured: bool,
    latency_us: u64,
    outcome: Outcome,
    /// When the answer completed (or the request was given up).
    done: Instant,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub async fn run(args: RateArgs) -> Result<Value> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let target = Arc::new(Target::new(&args.target)?);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let (samples, mut received) = mpsc::unbounded_channel::<Sample>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let timeout = Duration::from_millis(args.timeout_ms);
    let total = ((args.warmup + args.duration) * args.rate).round() as u64;
    let warmup = (args.warmup * args.rate).round() as u64;
    let at = |n: u64| Duration::from_secs_f64(n as f64 / args.rate);

    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * args.rate) as u64 + 1).min(total);
        while sent < due {
            let scheduled = start + at(sent);
            let measured = sent >= warmup;
            sent += 1;
            if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
                let _ = samples.send(Sample {
                    measured,
                    latency_us: 0,
                    outcome: Outcome::Dropped,
                    done: Instant::now(),
                });
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (client, target, samples, in_flight) = (
                client.clone(),
                target.clone(),
                samples.clone(),
                in_flight.clone(),
            );
            tokio::spawn(async move {
                let outcome = match tokio::time::timeout(timeout, call(&client, &target)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Timeout,
                };
                let done = Instant::now();
                let latency_us = done.duration_since(scheduled).as_micros() as u64;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let _ = samples.send(Sample {
                    measured,
                    latency_us,
                    outcome,
                    done,
                });
            });
        }
        tokio::time::sleep_until(start + at(sent)).await;
    }
    drop(samples);

    // Answers that completed inside the measured window, whenever they were sent: below the
    // offered rate when the server cannot keep pace, however short the run.
    let window = (start + at(warmup), start + at(total));
    let mut answered_in_window = 0u64;
    let mut latencies = Vec::with_capacity((args.duration * args.rate) as usize);
    let mut counts = [0u64; 5];
    while let Some(sample) = received.recv().await {
        if sample.outcome != Outcome::Dropped && sample.done >= window.0 && sample.done < window.1 {
            answered_in_window += 1;
        }
        if !sample.measured {
            continue;
        }
        counts[sample.outcome as usize] += 1;
        if matches!(sample.outcome, Outcome::Ok | Outcome::Status) {
            latencies.push(sample.latency_us);
        }
    }
    let [ok, status, transport, timeouts, dropped] = counts;
    let measured: u64 = counts.iter().sum();
    let errors = measured - ok;
    Ok(json!({
        "mode": "rate",
        "target_rps": args.rate,
        "duration_s": args.duration,
        "sent": measured,
        "ok": ok,
        "errors": errors,
        "error_kinds": {"status": status, "transport": transport, "timeout": timeouts, "dropped": dropped},
        "error_ratio": if measured == 0 { 0.0 } else { errors as f64 / measured as f64 },
        "achieved_rps": ok as f64 / args.duration,
        "answered_in_window_rps": answered_in_window as f64 / window.1.duration_since(window.0).as_secs_f64().max(1e-9),
        "latency_us": summary(latencies),
    }))
}

/// One request, read to the last byte.
async fn call(client: &HttpClient, target: &Target) -> Outcome {
    let Ok(request) = target.request(false) else {
        return Outcome::Transport;
    };
    let Ok(response) = client.request(request).await else {
        return Outcome::Transport;
    };
    let success = response.status().is_success();
    match response.into_body().collect().await {
        Err(_) => Outcome::Transport,
        Ok(_) if success => Outcome::Ok,
        Ok(_) => Outcome::Status,
    }
}
