//! `loadgen`: the benchmark's own load client, for what `wrk` cannot measure.
//!
//! - `paired`: concurrency 1, one request at a time taking turns between targets (direct,
//!   gateway, nginx), so machine noise hits all of them alike; latency percentiles per target.
//! - `rate`: open-loop load at a fixed request rate. Latency runs from each request's scheduled
//!   send time, so a server that falls behind shows its queue instead of slowing the client down.
//! - `streams`: N concurrent SSE streams; time to first token, gaps between deltas, stalls.
//! - `relay`: not a client but the leanest HTTP relay, optionally making one Redis round trip
//!   per request: what that round trip costs in place (the `limits` case).
//!
//! Prints one JSON object on stdout (`relay` serves until killed); `bench/bench.py` drives it.
//! Loopback only.

mod paired;
mod rate;
mod relay;
mod stats;
mod streams;
mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load client of the gateway benchmark (bench/README.md).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop load at a fixed rate; latency percentiles and error counts.
    Rate(rate::RateArgs),
    /// Concurrency 1, taking turns between targets; latency percentiles per target.
    Paired(paired::PairedArgs),
    /// Concurrent SSE streams; TTFT, inter-delta gaps and stalls.
    Streams(streams::StreamArgs),
    /// The leanest HTTP relay to a backend, with one Redis round trip per request or none.
    Relay(relay::RelayArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let command = match args.command {
        // Blocking threads, no runtime (see relay.rs).
        Command::Relay(args) => {
            return match relay::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("loadgen relay: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        command => command,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Paired(args) => paired::run(args).await,
            Command::Rate(args) => rate::run(args).await,
            Command::Streams(args) => streams::run(args).await,
            Command::Relay(_) => unreachable!("served above, without a runtime"),
        }
    });
    match result {
        Ok(summary) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}
