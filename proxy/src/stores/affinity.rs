//! The Responses affinity store: response id → name of the backend that created it (the
//! Responses API keeps a response's state on the resource that made it).

use std::sync::Arc;
use std::time::Duration;

/// Where response ids are remembered.
pub enum AffinityStore {
    /// This process only (one replica): a bounded cache whose entries expire after `ttl`.
    InProcess {
        cache: moka::sync::Cache<Box<str>, Arc<str>>,
        ttl: Duration,
        capacity: u64,
    },
}

impl std::fmt::Debug for AffinityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AffinityStore::InProcess { ttl, capacity, .. } => f
                .debug_struct("InProcess")
                .field("ttl", ttl)
                .field("capacity", capacity)
                .finish_non_exhaustive(),
        }
    }
}

impl AffinityStore {
    /// An in-process store.
    pub fn in_process(ttl: Duration, capacity: u64) -> Self {
        AffinityStore::InProcess {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            ttl,
            capacity,
        }
    }

    /// Whether this store is what these settings would build (a reload keeps it then).
    pub fn fits(&self, want_ttl: Duration, want_capacity: u64) -> bool {
        match self {
            AffinityStore::InProcess { ttl, capacity, .. } => {
                *ttl == want_ttl && *capacity == want_capacity
            }
        }
    }

    /// The backend that created `response_id`, if known.
    pub async fn lookup(&self, response_id: &str) -> Option<Arc<str>> {
        match self {
            AffinityStore::InProcess { cache, .. } => cache.get(response_id),
        }
    }

    /// Remembers that `backend` created `response_id`.
    pub async fn remember(&self, response_id: &str, backend: &Arc<str>) {
        match self {
            AffinityStore::InProcess { cache, .. } => {
                cache.insert(response_id.into(), backend.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_until_the_capacity_and_fits_only_its_own_settings() {
        let store = AffinityStore::in_process(Duration::from_secs(60), 10);
        let backend: Arc<str> = Arc::from("eus");
        assert_eq!(store.lookup("resp_1").await, None);
        store.remember("resp_1", &backend).await;
        assert_eq!(store.lookup("resp_1").await.as_deref(), Some("eus"));
        assert!(store.fits(Duration::from_secs(60), 10));
        assert!(!store.fits(Duration::from_secs(61), 10));
        assert!(!store.fits(Duration::from_secs(60), 11));
    }
}
