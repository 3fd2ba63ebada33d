//! The response cache stage: exact-match answers for non-streaming embeddings and
//! `temperature: 0` chat.

pub mod config;
