//! Stores: state that outlives a request and may have to be shared by every replica. Each store is
//! one enum with an async API, so a request awaits it the same way whether the state is in this
//! process or (with the capacity work) in Redis: `InProcess` answers at once, a `Redis` variant
//! will talk to its client on the background runtime ([`crate::background`]). A stage owns its
//! store and hands it to its successor on a reload, so a reload never empties it. Counters for
//! the limits and the response cache take the same shape.

pub mod affinity;
pub mod cache;
pub mod limits;
