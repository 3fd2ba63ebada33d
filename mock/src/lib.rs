//! Local servers speaking the Azure OpenAI wire protocol.
//!
//! [`MockServer`] answers chat completions, completions, embeddings, the Responses API and model
//! listing on both the legacy (`/openai/deployments/{d}/...?api-version=`) and the v1
//! (`/openai/v1/...`) surfaces, with the status codes, headers, bodies and SSE streams a real Azure
//! OpenAI resource sends. [`MockOptions`] injects latency, throttling (random, a real
//! tokens-per-minute window per deployment, or deployments out of quota), server errors,
//! in-stream errors and dropped connections, and writes its JSON in any valid layout
//! ([`JsonStyle`], shuffled keys); [`MockStats`] tells a test what the server saw. Used by the
//! proxy's tests, the benchmark and the local demo; the `mock` binary is a thin command line over
//! the same library.
//!
//! [`keyvault::MockKeyVault`] (HTTPS with a test CA made at start-up, the 401 challenge, secret
//! versions, throttling and outages) and [`identity::MockIdentity`] (the Container Apps managed
//! identity protocol) let hydrenv's Key Vault code run unchanged through the Azure SDK.

mod api;
mod body;
pub mod cli;
pub mod identity;
pub mod keyvault;
mod options;
mod reply;
mod route;
mod server;
mod service;
mod stats;
mod style;
mod throttle;

pub use options::MockOptions;
pub use server::MockServer;
pub use stats::{MockStats, RecordedRequest};
pub use style::JsonStyle;
