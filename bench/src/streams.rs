//! Concurrent SSE streams: each on its own connection, started evenly over a ramp, read event by
//! event. Per stream: time to first token (request sent → first content delta) and the gap
//! between consecutive content deltas. A gap above twice the backend's interval is a stall.
//!
//! With several `--target`s, stream i goes to target i mod n: the targets are measured in the
//! same moments (as in `paired`), and the figures are reported per target.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::stats::summary;
use crate::target::{NamedTargets, Target};

/// How a content delta starts in a chat completion chunk (the role chunk has `"role"` first).
const DELTA: &[u8] = b"\"delta\":{\"content\":\"";

#[derive(clap::Args, Debug)]
pub struct StreamArgs {
    /// Streams are dealt out over the targets in turn; the body should ask for a stream.
    #[command(flatten)]
    pub targets: NamedTargets,
    /// Streams in all (across targets).
    #[arg(long)]
    pub streams: usize,
    /// The backend's interval between deltas in ms; a gap above twice this is a stall.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Stream starts are spread evenly over this many ms.
    #[arg(long, default_value_t = 20)]
    pub ramp_ms: u64,
    /// A stream not finished after this many ms is an error.
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
}

/// What one stream saw.
#[derive(Default)]
struct Seen {
    error: Option<String>,
    ttft_us: Option<u64>,
    gaps_us: Vec<u64>,
    /// Arrival of each delta after the first (pairs with `gaps_us`).
    arrivals: Vec<Instant>,
    first_delta: Option<Instant>,
    last_delta: Option<Instant>,
}

pub async fn run(args: StreamArgs) -> Result<Value> {
    anyhow::ensure!(args.streams > 0, "--streams must be positive");
    let targets: Vec<(String, Arc<Target>)> = args
        .targets
        .parse()?
        .into_iter()
        .map(|(name, target)| (name, Arc::new(target)))
        .collect();
    let timeout = Duration::from_millis(args.timeout_ms);
    let begin = Instant::now();
    let step = Duration::from_millis(args.ramp_ms) / args.streams as u32;
    let tasks: Vec<_> = (0..args.streams)
        .map(|i| {
            let target = targets[i % targets.len()].1.clone();
            let start_at = begin + step * i as u32;
            tokio::spawn(async move {
                tokio::time::sleep_until(start_at).await;
                let mut seen = Seen::default();
                match tokio::time::timeout(timeout, one_stream(&target, &mut seen)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => seen.error = Some(format!("{error:#}")),
                    Err(_) => seen.error = Some("timeout".to_owned()),
                }
                seen
            })
        })
        .collect();
    let mut per_target: Vec<Vec<Seen>> = targets.iter().map(|_| Vec::new()).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        per_target[i % targets.len()].push(task.await.context("stream task panicked")?);
    }
    let stall_us = 2 * args.interval_ms * 1000;
    let mut out = Map::new();
    for ((name, _), seen) in targets.iter().zip(per_target) {
        out.insert(name.clone(), report(seen, stall_us, begin));
    }
    Ok(json!({
        "mode": "streams",
        "streams": args.streams,
        "stall_threshold_us": stall_us,
        "elapsed_s": begin.elapsed().as_secs_f64(),
        "targets": out,
    }))
}

/// The figures of one target's streams.
fn report(all: Vec<Seen>, stall_us: u64, begin: Instant) -> Value {
    let streams = all.len();
    let mut ttfts = Vec::new();
    let mut gaps = Vec::new();
    let mut stalls = 0u64;
    let mut stalled_streams = 0u64;
    let mut errors: Vec<String> = Vec::new();
    let mut spans = Vec::new();
    let mut stall_at_ms = Vec::new();
    for seen in all {
        if let Some(error) = seen.error {
            errors.push(error);
        }
        ttfts.extend(seen.ttft_us);
        for (gap, at) in seen.gaps_us.iter().zip(&seen.arrivals) {
            if *gap > stall_us {
                stall_at_ms.push(at.duration_since(begin).as_millis() as u64);
            }
        }
        let stalled = seen.gaps_us.iter().filter(|&&g| g > stall_us).count() as u64;
        stalls += stalled;
        stalled_streams += u64::from(stalled > 0);
        gaps.extend(seen.gaps_us);
        if let (Some(first), Some(last)) = (seen.first_delta, seen.last_delta) {
            spans.push((first, last));
        }
    }
    let failed = errors.len();
    errors.sort();
    errors.dedup();
    errors.truncate(5);
    json!({
        "streams": streams,
        "completed": streams - failed,
        "failed": failed,
        "errors_sample": errors,
        "peak_concurrent": peak_concurrent(&spans),
        "deltas": gaps.len() + spans.len(),
        "stalls": stalls,
        "stalled_streams": stalled_streams,
        "stall_at_ms": summary(stall_at_ms),
        "ttft_us": summary(ttfts),
        "gap_us": summary(gaps),
    })
}

async fn one_stream(target: &Target, seen: &mut Seen) -> Result<()> {
    let tcp = TcpStream::connect(&target.authority).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let request = target.request(true)?;
    let sent = Instant::now();
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("status {}", response.status().as_u16());
    }
    let mut body = response.into_body();
    let mut pending = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let now = Instant::now();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = memchr::memmem::find(&pending, b"\n\n") {
            let event = pending.split_to(end + 2);
            if memchr::memmem::find(&event, DELTA).is_none() {
                continue;
            }
            match seen.last_delta {
                None => {
                    seen.ttft_us = Some(now.duration_since(sent).as_micros() as u64);
                    seen.first_delta = Some(now);
                }
                Some(last) => {
                    seen.gaps_us
                        .push(now.duration_since(last).as_micros() as u64);
                    seen.arrivals.push(now);
                }
            }
            seen.last_delta = Some(now);
        }
    }
    if seen.first_delta.is_none() {
        bail!("stream ended without a content delta");
    }
    Ok(())
}

/// Most streams between their first and last delta at the same moment.
fn peak_concurrent(spans: &[(Instant, Instant)]) -> usize {
    let mut edges: Vec<(Instant, i64)> = spans
        .iter()
        .flat_map(|&(first, last)| [(first, 1), (last, -1)])
        .collect();
    edges.sort();
    let mut running = 0i64;
    let mut peak = 0i64;
    for (_, step) in edges {
        running += step;
        peak = peak.max(running);
    }
    peak as usize
}
