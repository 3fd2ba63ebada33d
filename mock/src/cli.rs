//! The `mock` command line: options for one backend, `--instances N` for several, and a run loop
//! that serves until SIGTERM or Ctrl-C.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::{JsonStyle, MockOptions, MockServer};

/// Mock Azure OpenAI backend(s) speaking the real wire protocol.
#[derive(Clone, Debug, Parser)]
#[command(name = "mock", version)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Backend name, sent in `x-mock-backend` and `x-ms-region`.
    #[arg(long, default_value = "mock")]
    pub name: String,
    /// Delay before response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay between streamed deltas, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub chunk_interval_ms: u64,
    /// Content deltas per stream (and completion tokens).
    #[arg(long, default_value_t = 8)]
    pub chunk_count: usize,
    /// Probability (0..=1) of answering 429.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub rate_429: f64,
    /// `retry-after-ms` of injected 429s.
    #[arg(long, default_value_t = 1000)]
    pub retry_after_ms: u64,
    /// Probability (0..=1) of answering 500.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub rate_5xx: f64,
    /// Answer every request with this status.
    #[arg(long)]
    pub status_override: Option<u16>,
    /// Tokens per sliding minute and deployment before answering 429.
    #[arg(long)]
    pub tpm_limit: Option<u64>,
    /// Answer every request for this deployment (path or body `model`) with 429; repeatable.
    #[arg(long = "throttled-deployment", value_name = "DEPLOYMENT")]
    pub throttled_deployments: Vec<String>,
    /// Make every stream a single in-stream error event with this code.
    #[arg(long)]
    pub stream_error_first: Option<String>,
    /// Cut the connection after this many streamed deltas.
    #[arg(long)]
    pub disconnect_after_chunks: Option<usize>,
    /// Leave out `x-ratelimit-remaining-*` headers.
    #[arg(long)]
    pub no_ratelimit_headers: bool,
    /// Never send a stream's usage chunk, even when `stream_options.include_usage` asks for it.
    #[arg(long)]
    pub no_stream_usage: bool,
    /// Require this key in `api-key` or `Authorization: Bearer`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Layout of every JSON written (bodies, SSE chunks, errors).
    #[arg(long, value_enum, default_value_t = JsonStyle::Compact)]
    pub json_style: JsonStyle,
    /// Write every object's keys in a random order.
    #[arg(long)]
    pub shuffle_keys: bool,
    /// Number of backends, named `<name>-0` .. `<name>-<N-1>` when more than one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub instances: u16,
}

fn probability(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{text}` is not between 0 and 1"))
    }
}

impl Args {
    /// Options of instance `index`.
    pub fn options(&self, index: u16) -> MockOptions {
        let name = if self.instances > 1 {
            format!("{}-{index}", self.name)
        } else {
            self.name.clone()
        };
        MockOptions {
            name,
            latency: Duration::from_millis(self.latency_ms),
            chunk_interval: Duration::from_millis(self.chunk_interval_ms),
            chunk_count: self.chunk_count,
            rate_429: self.rate_429,
            retry_after_ms: self.retry_after_ms,
            rate_5xx: self.rate_5xx,
            status_override: self.status_override,
            tpm_limit: self.tpm_limit,
            throttled_deployments: self.throttled_deployments.clone(),
            stream_error_first: self.stream_error_first.clone(),
            disconnect_after_chunks: self.disconnect_after_chunks,
            ratelimit_headers: !self.no_ratelimit_headers,
            stream_usage: !self.no_stream_usage,
            api_key: self.api_key.clone(),
            secondary_api_key: None,
            json_style: self.json_style,
            shuffle_keys: self.shuffle_keys,
            // Nothing can read the log of a standalone backend; keep memory flat under load.
            record_requests: false,
        }
    }

    /// Address of instance `index`: consecutive ports from a fixed port, else free ports.
    pub fn listen_addr(&self, index: u16) -> io::Result<SocketAddr> {
        let mut addr = self.listen;
        if addr.port() != 0 {
            let port = addr.port().checked_add(index).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "instance port out of range")
            })?;
            addr.set_port(port);
        }
        Ok(addr)
    }
}

/// Starts every instance, reports `mock <name> listening on <url>` for each through `announce`,
/// and serves until SIGTERM or Ctrl-C.
pub async fn run(args: Args, mut announce: impl FnMut(&str)) -> io::Result<()> {
    let mut servers = Vec::with_capacity(usize::from(args.instances));
    for index in 0..args.instances {
        let options = args.options(index);
        let name = options.name.clone();
        let server = MockServer::start_on(args.listen_addr(index)?, options).await?;
        announce(&format!("mock {name} listening on {}", server.url()));
        servers.push(server);
    }
    shutdown_signal().await?;
    for server in servers {
        server.shutdown().await;
    }
    Ok(())
}

#[cfg(unix)]
async fn shutdown_signal() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => Ok(()),
        interrupted = tokio::signal::ctrl_c() => interrupted,
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() -> io::Result<()> {
    tokio::signal::ctrl_c().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_get_suffixed_names_and_ports() {
        let args = Args::try_parse_from([
            "mock",
            "--listen",
            "127.0.0.1:9000",
            "--name",
            "eus",
            "--instances",
            "3",
            "--rate-429",
            "0.5",
            "--no-ratelimit-headers",
            "--json-style",
            "pretty",
            "--shuffle-keys",
            "--throttled-deployment",
            "gpt-4o",
            "--throttled-deployment",
            "o3",
        ])
        .expect("args parse");
        let options = args.options(2);
        assert_eq!(options.name, "eus-2");
        assert_eq!(options.rate_429, 0.5);
        assert!(!options.ratelimit_headers);
        assert_eq!(options.json_style, JsonStyle::Pretty);
        assert!(options.shuffle_keys);
        assert_eq!(options.throttled_deployments, ["gpt-4o", "o3"]);
        assert_eq!(args.listen_addr(2).expect("addr").port(), 9002);
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        assert!(Args::try_parse_from(["mock", "--rate-5xx", "1.5"]).is_err());
        assert!(Args::try_parse_from(["mock", "--instances", "0"]).is_err());
    }
}
