//! The gateway's data plane: an Azure OpenAI-aware reverse proxy.
//!
//! Request stages are assembled in [`pipeline`]; the config schema is [`config`]; listeners and
//! drain are in [`server`].

pub mod answer;
pub mod auth;
pub mod backend;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod error;
pub mod failover;
pub mod gateway;
pub mod health;
pub mod http1;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod reload;
pub mod request_body;
pub mod routes;
pub mod scan;
pub mod secret;
pub mod server;
pub mod socket;
pub mod sse;
pub mod upstream;
pub mod usage;
pub mod worker;

pub use config::{ConfigError, GatewayConfig};
pub use server::RunningGateway;
