//! hydrenv: turns the environment (app settings + Key Vault secrets) into immutable config files
//! for the gateway and the OpenTelemetry Collector, then hands over to the proxy.
//!
//! The pipeline lives in [`app`]; the variable table in [`vars`]; releases in [`release`].

pub mod app;
pub mod cli;
pub mod collector;
pub mod diff;
pub mod env;
pub mod explain;
pub mod fields;
pub mod keyvault;
pub mod redact;
pub mod release;
pub mod render;
pub mod settings;
pub mod supervise;
pub mod vars;
