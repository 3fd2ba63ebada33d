//! Hot reload: on SIGHUP, or when the config file (or the `current` release symlink above it)
//! changes, load and validate the file completely and swap it in. A file that fails validation
//! is rejected and the running config stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::GatewayConfig;
use crate::server::RunningGateway;

/// Why a reload is attempted.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Signal,
    FileChanged,
}

/// Watches `path` (and the symlinked release directory above it) and reloads on changes or
/// on a message from `triggers` (the SIGHUP handler). The watch is set up and the current file
/// read when this is called, not when the returned future first runs, so a change made right
/// after the call is never missed. The future runs until the gateway is dropped.
pub fn watch(
    path: PathBuf,
    gateway: Arc<RunningGateway>,
    mut triggers: mpsc::Receiver<Trigger>,
) -> impl Future<Output = ()> + Send {
    let (events_tx, mut events) = mpsc::channel::<()>(64);
    let watcher = start_watcher(&path, events_tx);
    if let Err(error) = &watcher {
        tracing::warn!(%error, path = %path.display(), "cannot watch the config; reload on SIGHUP only");
    }
    let mut last = std::fs::read(&path).ok();
    async move {
        let _watcher = watcher;
        loop {
            let trigger = tokio::select! {
                Some(trigger) = triggers.recv() => trigger,
                Some(()) = events.recv() => {
                    // A release swap is a burst of events; settle, then look once.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while events.try_recv().is_ok() {}
                    Trigger::FileChanged
                }
                else => return,
            };
            // The file as last applied (or refused) is not loaded again, whatever the trigger:
            // hydrenv's release swap is seen by the watch and followed by its SIGHUP, and one
            // release must not rebuild the gateway twice.
            let contents = std::fs::read(&path).ok();
            if contents == last {
                tracing::debug!(?trigger, "config unchanged; nothing to reload");
                continue;
            }
            // Parsing runs off the worker thread, which keeps serving requests meanwhile.
            let file = path.clone();
            let loaded = tokio::task::spawn_blocking(move || GatewayConfig::load(&file)).await;
            let Ok(loaded) = loaded else { continue };
            match loaded {
                Ok(config) => {
                    gateway.reload(config);
                    last = contents;
                }
                Err(error) => {
                    gateway.reject_reload(&error);
                    // Do not retry the same bad bytes on every event.
                    last = contents;
                }
            }
        }
    }
}

/// Watches the config's directory and its parent (where hydrenv swaps `current`).
fn start_watcher(
    path: &Path,
    events: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = events.try_send(());
        }
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    if let Some(parent) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        watcher.watch(parent, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
