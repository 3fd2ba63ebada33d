//! Integration tests of the mock backend over real HTTP: a hyper client against servers on
//! port 0.
// Test helpers outside `#[test]` functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod chat;
mod embeddings;
mod faults;
mod keyvault;
mod quotas;
mod responses;
mod streams;
mod styles;
mod support;
