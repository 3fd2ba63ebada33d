//! The limits stage: request rate, request quota, token limit and token quota.

pub mod config;
