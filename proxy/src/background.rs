//! The background runtime: one thread of its own, next to the per-CPU workers, where the
//! gateway's long-lived clients run (active health probes now; the Redis clients, the OTLP
//! exporter, token refreshers and JWKS refreshes as they come).
//!
//! Why not on a worker: a worker is a single-threaded runtime whose tasks are requests; a
//! client's connection driver or refresh loop there would compete with them, stall when that
//! worker is busy, and stop when that worker's runtime ends. So such tasks are spawned here,
//! through [`handle`], and workers reach them only through runtime-agnostic handles (channels,
//! `Arc`ed state, a client whose driver task runs here): a request awaits a reply that this
//! thread sends, and never runs a background task itself. The thread starts with the first
//! use and lives as long as the process.
//!
//! One measured exception: a worker's Redis admissions go over a connection of the worker's
//! own, driven on its thread like its backend connections (through this thread the two hops
//! cost more than the round trip); see `stores/limits/redis.rs`.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};

/// The background runtime's handle (started on first use).
pub fn handle() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(start)
}

fn start() -> Handle {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .thread_name("gateway-background")
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        // Without a runtime of its own (no thread, no timer), background work shares the
        // caller's: degraded, not broken.
        Err(error) => {
            tracing::error!(%error, "cannot start the background runtime; using the caller's");
            return Handle::current();
        }
    };
    let handle = runtime.handle().clone();
    let started = std::thread::Builder::new()
        .name("gateway-background".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()));
    if let Err(error) = started {
        tracing::error!(%error, "cannot start the background thread; using the caller's runtime");
        return Handle::current();
    }
    handle
}

#[cfg(test)]
mod tests {
    #[test]
    fn work_spawned_from_a_worker_runs_on_the_background_thread_and_answers_it() {
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ran_on = worker.block_on(async {
            let (reply, answer) = tokio::sync::oneshot::channel();
            super::handle().spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let _ = reply.send(std::thread::current().name().map(str::to_owned));
            });
            answer.await.unwrap()
        });
        assert_eq!(ran_on.as_deref(), Some("gateway-background"));
    }
}
