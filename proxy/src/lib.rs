//! The gateway's data plane: an Azure OpenAI-aware reverse proxy.
//!
//! Request stages are ordered in [`pipeline`] and live in [`stages`]; what a request carries is
//! [`ctx`] and where it ends is [`end`]; the config schema is [`config`]; listeners and drain are
//! in [`server`]. `docs/architecture.md` is the map.

pub mod answer;
pub mod backend;
pub mod background;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod ctx;
pub mod end;
pub mod error;
pub mod failover;
pub mod gateway;
pub mod health;
pub mod http1;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod reload;
pub mod scan;
pub mod secret;
pub mod server;
pub mod socket;
pub mod sse;
pub mod stages;
pub mod stores;
pub mod upstream;
pub mod usage;
pub mod worker;

pub use config::{ConfigError, GatewayConfig};
pub use server::RunningGateway;
