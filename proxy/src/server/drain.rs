//! A one-way signal many tasks wait for: the drain as one API loop's connections wait for it, and
//! the cut at the drain deadline as the streams still running wait for it.
//!
//! A connection waits for its next request most of its life, and every such wait must end when
//! a drain begins. A channel receiver (`watch`, `Notify`) registers and unregisters the waiting
//! task under a lock on every wait, that is per request. Here a connection registers its task
//! once, for its whole life; each wait after that is a flag load and a waker comparison.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// One API loop's drain: begun once, seen by each of its connections.
#[derive(Debug, Default)]
pub struct Drain {
    begun: AtomicBool,
    /// The tasks of the connections that wait for it (one slot per connection).
    waiting: Mutex<Slab<Waker>>,
}

impl Drain {
    /// Begins the drain: every connection's wait ends, and waits that start later end at once.
    pub fn begin(&self) {
        self.begun.store(true, Ordering::SeqCst);
        for (_, waker) in self.lock().iter() {
            waker.wake_by_ref();
        }
    }

    /// Whether it has begun.
    pub fn is_begun(&self) -> bool {
        self.begun.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Waker>> {
        // Insert, replace and remove do not unwind halfway: the slab stays whole.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's view of its loop's [`Drain`].
pub struct DrainWatch {
    drain: Arc<Drain>,
    /// The slot and the waker last registered there (a task keeps its waker, so after the first
    /// wait this is only compared).
    registered: Option<(usize, Waker)>,
}

impl DrainWatch {
    pub fn new(drain: Arc<Drain>) -> Self {
        Self {
            drain,
            registered: None,
        }
    }

    /// Whether the drain has begun.
    pub fn begun(&self) -> bool {
        self.drain.begun.load(Ordering::SeqCst)
    }

    /// `Ready` once the drain has begun; otherwise this task is woken when it does.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.begun() {
            return Poll::Ready(());
        }
        let current = cx.waker();
        match &mut self.registered {
            Some((_, waker)) if waker.will_wake(current) => {}
            Some((slot, waker)) => {
                waker.clone_from(current);
                self.drain.lock()[*slot].clone_from(current);
            }
            None => {
                let slot = self.drain.lock().insert(current.clone());
                self.registered = Some((slot, current.clone()));
            }
        }
        // `begin` sets the flag before it takes the lock to wake: a registration it did not
        // see is followed by this load, which sees the flag.
        if self.begun() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the drain has begun.
    pub async fn begun_wait(&mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await
    }
}

impl Drop for DrainWatch {
    fn drop(&mut self) {
        if let Some((slot, _)) = self.registered.take() {
            self.drain.lock().remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_registered_wait_is_woken_once_the_drain_begins_and_later_waits_end_at_once() {
        let drain = Arc::new(Drain::default());
        let (count, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut watch = DrainWatch::new(drain.clone());
        // Many waits, one registration.
        for _ in 0..3 {
            assert!(watch.poll(&mut cx).is_pending());
        }
        assert_eq!(drain.lock().len(), 1);
        assert!(!watch.begun());
        drain.begin();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(watch.begun());
        assert!(watch.poll(&mut cx).is_ready());
        let mut late = DrainWatch::new(drain.clone());
        assert!(late.poll(&mut cx).is_ready());
    }

    #[test]
    fn a_new_waker_replaces_the_old_one_and_a_dropped_watch_leaves_its_slot() {
        let drain = Arc::new(Drain::default());
        let (first, first_waker) = waker();
        let (second, second_waker) = waker();
        let mut watch = DrainWatch::new(drain.clone());
        assert!(
            watch
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending()
        );
        assert!(
            watch
                .poll(&mut Context::from_waker(&second_waker))
                .is_pending()
        );
        let mut gone = DrainWatch::new(drain.clone());
        assert!(
            gone.poll(&mut Context::from_waker(&first_waker))
                .is_pending()
        );
        drop(gone);
        assert_eq!(drain.lock().len(), 1);
        drain.begin();
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "replaced and dropped");
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
