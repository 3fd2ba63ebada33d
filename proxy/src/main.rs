//! `proxy`: run the gateway from a config file, or only validate one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use proxy::{GatewayConfig, RunningGateway};

/// mimalloc: its per-thread free lists make the small, short-lived allocations of a request
/// (header maps, body slices, futures) cheaper than glibc malloc (measured with bench/compare.py).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Azure OpenAI gateway data plane.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Config file to serve (YAML, see docs/gateway-config.schema.json).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["check", "print_schema"])]
    config: Option<PathBuf>,
    /// Validate this config file and exit (0 valid, 64 invalid).
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Print the JSON Schema of the config file and exit.
    #[arg(long)]
    print_schema: bool,
}

/// Exit code for an invalid config (EX_DATAERR-style, as hydrenv uses 64 for bad configuration).
const EXIT_BAD_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_schema {
        #[allow(clippy::print_stdout)]
        {
            print!("{}", proxy::config::json_schema());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = args.check {
        return match GatewayConfig::load(&path) {
            Ok(_) => {
                eprintln!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        };
    }
    let Some(path) = args.config else {
        eprintln!("error: give --config FILE (or --check FILE)");
        return ExitCode::from(2);
    };
    let config = match GatewayConfig::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Held to the end: dropping it flushes the lines still queued for stdout.
    let _logs = proxy::logging::init(&config.log.level, config.log.queue_lines);
    match run(config, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(70)
        }
    }
}

/// The main thread's single-threaded runtime is worker 0; the others are started by
/// [`RunningGateway::start_with_workers`] (one per CPU this process may use).
#[tokio::main(flavor = "current_thread")]
async fn run(config: GatewayConfig, path: PathBuf) -> anyhow::Result<()> {
    use proxy::reload::{Trigger, watch};
    use std::sync::Arc;
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let workers = proxy::worker::default_count();
    let gateway = Arc::new(RunningGateway::start_with_workers(config, workers).await?);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let watcher = tokio::spawn(watch(path, gateway.clone(), reload_rx));
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                let _ = reload_tx.try_send(Trigger::Signal);
            }
        }
    }
    tracing::info!("shutdown signal received");
    watcher.abort();
    let _ = watcher.await;
    match Arc::try_unwrap(gateway) {
        Ok(gateway) => gateway.shutdown().await,
        Err(_) => tracing::warn!("gateway still referenced; exiting without drain"),
    }
    tracing::info!("drained; exiting");
    Ok(())
}
