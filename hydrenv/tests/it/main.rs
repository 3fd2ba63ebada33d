//! Integration tests of hydrenv: rendering, releases, the binary, Key Vault.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod bad_input;
mod cli;
mod defaults;
mod image;
mod keyvault;
mod release;
mod render;
mod secrets;
mod soak;
mod supervise;
mod terraform;
