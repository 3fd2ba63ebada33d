//! Integration tests of the mock backend over real HTTP: a hyper client against servers on
//! port 0.

mod binary;
mod chat;
mod embeddings;
mod faults;
mod responses;
mod streams;
mod support;
