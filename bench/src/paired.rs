//! Latency at concurrency 1, paired: one request at a time, taking turns between targets (for
//! example direct, gateway, nginx) on kept-alive connections. Whatever else the machine does
//! hits every target in the same moments, so differences between targets are the targets' own
//! (a shared, noisy machine moves each target's p99 far more than the gateway adds).

use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::stats::summary;
use crate::target::{NamedTargets, Target};

#[derive(clap::Args, Debug)]
pub struct PairedArgs {
    #[command(flatten)]
    pub targets: NamedTargets,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of requests before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Requests a target gets in a row before the next one's turn. With more than one, the
    /// first of each turn is not timed (its errors still count): work a target leaves for
    /// after its answer (a settlement sent once the answer is out, a batch on a timer) then
    /// delays its own next request, as it would for its own client, and not the other
    /// target's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub turn: u32,
}

struct Lane {
    name: String,
    target: Target,
    sender: Sender,
    latencies: Vec<u64>,
    errors: u64,
}

pub async fn run(args: PairedArgs) -> Result<Value> {
    let named = args.targets.parse()?;
    let mut lanes = Vec::with_capacity(named.len());
    for (name, target) in named {
        let sender = connect(&target).await?;
        lanes.push(Lane {
            name,
            target,
            sender,
            latencies: Vec::new(),
            errors: 0,
        });
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let mut round = 0usize;
    while Instant::now() < end {
        // Rotate who goes first, so no target always follows the same one.
        let n = lanes.len();
        for k in 0..n {
            let lane = &mut lanes[(round + k) % n];
            for i in 0..args.turn {
                // A connection the target closed (or that broke) is replaced before the clock
                // starts.
                if lane.sender.ready().await.is_err() {
                    lane.sender = connect(&lane.target).await?;
                }
                let sent = Instant::now();
                // A failed exchange is an error of this target, not the end of the run.
                let ok = call(lane).await.unwrap_or(false);
                let latency = sent.elapsed().as_micros() as u64;
                if sent >= measure_from {
                    if !ok {
                        lane.errors += 1;
                    } else if i > 0 || args.turn == 1 {
                        lane.latencies.push(latency);
                    }
                }
            }
        }
        round += 1;
    }
    let mut targets = Map::new();
    for lane in lanes {
        targets.insert(
            lane.name,
            json!({"errors": lane.errors, "latency_us": summary(lane.latencies)}),
        );
    }
    Ok(json!({"mode": "paired", "duration_s": args.duration, "rounds": round, "targets": targets}))
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

async fn connect(target: &Target) -> Result<Sender> {
    let tcp = TcpStream::connect(&target.authority)
        .await
        .with_context(|| format!("connect {}", target.authority))?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One request read to its last byte: whether it succeeded.
async fn call(lane: &mut Lane) -> Result<bool> {
    let response = lane.sender.send_request(lane.target.request(true)?).await?;
    let ok = response.status().is_success();
    response.into_body().collect().await?;
    Ok(ok)
}
