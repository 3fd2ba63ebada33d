//! Integration tests of the proxy: real listeners on port 0, mock Azure OpenAI backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod auth;
mod balancing;
mod cache;
mod cli;
mod conformance;
mod ending;
mod failover;
mod hangup;
mod health;
mod hostile;
mod http1;
mod limits;
mod oracle;
mod process;
mod quotas;
mod redis_server;
mod reload;
mod routing;
mod sdk;
mod streaming;
mod upstream;
mod workers;
