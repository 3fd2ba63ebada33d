//! The response cache store: a key (a SHA-256 digest of everything an answer depends on, see
//! [`crate::stages::cache`]) → the answer's body and content type. Nothing else of the backend's
//! answer is kept: no request id, no cookie, no rate-limit state.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

/// What an entry costs besides its key, body and content type (the entry's own allocation and
/// moka's bookkeeping for it), so that many small answers cannot hold far more than the bound.
const ENTRY_OVERHEAD: u64 = 128;

/// An answer kept for the requests that ask the same.
#[derive(Debug)]
pub struct CachedAnswer {
    /// An allocation of its own, exactly the body's size: nothing else of the backend's read
    /// buffer (its head, say) stays held by the entry.
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// Bytes counted against the bound: key, body, content type and [`ENTRY_OVERHEAD`].
    weight: u32,
}

impl CachedAnswer {
    /// An entry for `body` (copied) and `content_type` under a key of `key_len` bytes.
    pub fn new(key_len: usize, body: &[u8], content_type: Option<&[u8]>) -> Self {
        let content_type = content_type.and_then(|value| HeaderValue::from_bytes(value).ok());
        let bytes = key_len as u64
            + body.len() as u64
            + content_type.as_ref().map_or(0, |v| v.len() as u64)
            + ENTRY_OVERHEAD;
        Self {
            body: Bytes::copy_from_slice(body),
            content_type,
            weight: u32::try_from(bytes).unwrap_or(u32::MAX),
        }
    }

    /// Bytes counted against the bound.
    pub fn weight(&self) -> u64 {
        u64::from(self.weight)
    }
}

/// Where cached answers live.
pub enum CacheStore {
    /// This process only: a cache bounded by the bytes of its entries (moka's weigher; the
    /// least used entries leave first), each entry expiring `ttl` after it was stored.
    InProcess {
        cache: moka::sync::Cache<Bytes, Arc<CachedAnswer>>,
        ttl: Duration,
        max_bytes: u64,
    },
}

impl std::fmt::Debug for CacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheStore::InProcess { ttl, max_bytes, .. } => f
                .debug_struct("InProcess")
                .field("ttl", ttl)
                .field("max_bytes", max_bytes)
                .finish_non_exhaustive(),
        }
    }
}

impl CacheStore {
    /// An in-process store holding at most `max_bytes` of entries for `ttl` each.
    pub fn in_process(ttl: Duration, max_bytes: u64) -> Self {
        CacheStore::InProcess {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &Bytes, answer: &Arc<CachedAnswer>| answer.weight)
                .time_to_live(ttl)
                .build(),
            ttl,
            max_bytes,
        }
    }

    /// Whether this store is what these settings would build (a reload keeps it then).
    pub fn fits(&self, want_ttl: Duration, want_max_bytes: u64) -> bool {
        match self {
            CacheStore::InProcess { ttl, max_bytes, .. } => {
                *ttl == want_ttl && *max_bytes == want_max_bytes
            }
        }
    }

    /// The heaviest entry stored: an eighth of the bound, so that one large answer cannot push
    /// out most of the others.
    pub fn largest_entry(&self) -> u64 {
        match self {
            CacheStore::InProcess { max_bytes, .. } => *max_bytes / 8,
        }
    }

    /// The answer stored under `key`, unless it expired.
    pub async fn lookup(&self, key: &[u8]) -> Option<Arc<CachedAnswer>> {
        match self {
            CacheStore::InProcess { cache, .. } => cache.get(key),
        }
    }

    /// Stores `answer` under `key`, unless it is heavier than [`Self::largest_entry`]; whether
    /// it was stored.
    pub async fn store(&self, key: Bytes, answer: CachedAnswer) -> bool {
        if answer.weight() > self.largest_entry() {
            return false;
        }
        match self {
            CacheStore::InProcess { cache, .. } => cache.insert(key, Arc::new(answer)),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_what_fits_an_eighth_of_the_bound_and_fits_only_its_own_settings() {
        let store = CacheStore::in_process(Duration::from_secs(60), 8 * 1024);
        let key = Bytes::from_static(b"k1");
        assert!(store.lookup(&key).await.is_none());
        let answer = CachedAnswer::new(key.len(), b"{\"a\":1}", Some(b"application/json"));
        assert!(store.store(key.clone(), answer).await);
        let found = store.lookup(&key).await.unwrap();
        assert_eq!(&found.body[..], b"{\"a\":1}");
        assert_eq!(found.content_type.as_ref().unwrap(), "application/json");
        // Key + body + field + overhead over 1 KiB: not stored.
        let big = vec![b'x'; 1024 - ENTRY_OVERHEAD as usize];
        let key2 = Bytes::from_static(b"k2");
        assert!(
            !store
                .store(key2.clone(), CachedAnswer::new(2, &big, None))
                .await
        );
        assert!(store.lookup(&key2).await.is_none());
        assert!(store.fits(Duration::from_secs(60), 8 * 1024));
        assert!(!store.fits(Duration::from_secs(61), 8 * 1024));
        assert!(!store.fits(Duration::from_secs(60), 8 * 1025));
    }
}
