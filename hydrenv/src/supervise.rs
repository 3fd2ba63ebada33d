//! `hydrenv supervise`: stay the parent of the proxy. Forward SIGTERM/SIGINT/SIGHUP, reap every
//! child (we may be PID 1), and re-render on a change of the env-file directory or, every
//! `HYDRENV_REFRESH_SECONDS`, of Key Vault secrets; a new release is followed by SIGHUP so the
//! proxy reloads without dropping requests. Renders run beside the signal loop: a slow Key Vault
//! never delays forwarding a SIGTERM or reaping the child.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{SignalKind, signal};

use crate::app::{self, EXIT_INTERNAL, Failure, Vault};
use crate::env::Env;
use crate::keyvault::KeyVaultSource;
use crate::render::Templates;

/// Runs until the child exits; returns its exit code.
/// `source`: the Key Vault client to use for every render (tests pass one that trusts a test CA);
/// `None` builds one from the environment, so refresh polls reuse its token and connections, and
/// builds it again when the env-file directory changes (it may change the credential settings).
pub async fn run(
    env: Env,
    templates: Templates,
    command: Vec<String>,
    source: Option<KeyVaultSource>,
) -> Result<u8, Failure> {
    let given = source.is_some();
    let mut source = match source {
        Some(source) => Some(source),
        None => app::vault_from_env(&env)?,
    }
    .map(Arc::new);
    let templates = Arc::new(templates);
    // Watched before the first render reads it: a change at any moment after that render
    // started is seen (the child being up implies the directory is watched).
    app::layer_env_dir(env.clone())?;
    let (changes_tx, mut changes) = tokio::sync::mpsc::channel::<()>(16);
    let _watcher = watch_env_dir(&env, changes_tx)?;
    let render = app::prepare(env.clone(), &templates, vault(&source)).await?;
    let root = render.settings.shared_root.clone();
    let released = crate::cli::publish(&root, &render)?;
    eprint!("hydrenv: {}", crate::cli::describe(&released));
    // Whether Key Vault is polled; each accepted render says so again (the env-file directory
    // may add or remove references).
    let mut has_vault = !render.secret_versions.is_empty();
    let refresh = env
        .get("HYDRENV_REFRESH_SECONDS")
        .map(|v| crate::env::parse_seconds("HYDRENV_REFRESH_SECONDS", v))
        .transpose()
        .map_err(|e| Failure::config(vec![e.to_string()]))?
        .unwrap_or(Duration::from_secs(300))
        .max(Duration::from_secs(1));
    let command = if command.is_empty() {
        crate::cli::default_command(&root)?
    } else {
        command
    };
    // Orphans of the proxy become ours to reap even when we are not PID 1.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut sigchld = signal(SignalKind::child()).map_err(internal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(internal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(internal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(internal)?;
    let child = Command::new(&command[0])
        .args(&command[1..])
        .spawn()
        .map_err(|e| Failure::one(EXIT_INTERNAL, format!("cannot start {}: {e}", command[0])))?;
    let child = Pid::from_raw(child.id() as i32);
    let mut ticker = tokio::time::interval(refresh);
    // Ticks missed while polls were off (no reference yet) or a render ran do not fire in a
    // burst afterwards; the next poll is a full period after the last render.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // The render in flight, and the reason for one more once it is done.
    let mut rendering: Option<tokio::task::JoinHandle<Option<bool>>> = None;
    let mut queued: Option<&'static str> = None;
    loop {
        if rendering.is_none()
            && let Some(why) = queued.take()
        {
            let (env, templates, source) = (env.clone(), templates.clone(), source.clone());
            rendering = Some(tokio::spawn(async move {
                rerender(&env, &templates, vault(&source), child, why).await
            }));
        }
        tokio::select! {
            _ = sigchld.recv() => {
                if let Some(code) = reap(child) {
                    return Ok(code);
                }
            }
            _ = sigterm.recv() => forward(child, Signal::SIGTERM),
            _ = sigint.recv() => forward(child, Signal::SIGINT),
            _ = sighup.recv() => forward(child, Signal::SIGHUP),
            Some(()) = changes.recv() => {
                // Let a burst of file events settle, then render once.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while changes.try_recv().is_ok() {}
                let why = "env-file directory changed";
                if !given {
                    match app::vault_from_env(&env) {
                        Ok(rebuilt) => source = rebuilt.map(Arc::new),
                        Err(failure) => {
                            eprint!("hydrenv: {why}: new render rejected, keeping the current release\n{failure}");
                            continue;
                        }
                    }
                }
                queued = Some(why);
            }
            _ = ticker.tick(), if has_vault => queued = queued.or(Some("Key Vault refresh")),
            done = finished(&mut rendering), if rendering.is_some() => {
                rendering = None;
                ticker.reset();
                if let Ok(Some(secrets)) = done {
                    has_vault = secrets;
                }
            }
        }
    }
}

/// The outcome of the render in flight (pending forever when there is none).
async fn finished(
    rendering: &mut Option<tokio::task::JoinHandle<Option<bool>>>,
) -> Result<Option<bool>, tokio::task::JoinError> {
    match rendering {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// The client to render with: the cached one, or none needed / built per render.
fn vault(source: &Option<Arc<KeyVaultSource>>) -> Vault<'_> {
    source.as_deref().map_or(Vault::FromEnv, Vault::Source)
}

fn internal(e: std::io::Error) -> Failure {
    Failure::one(EXIT_INTERNAL, format!("signal setup failed: {e}"))
}

fn forward(child: Pid, signal: Signal) {
    let _ = kill(child, signal);
}

/// Reaps every exited child; returns the exit code once the main child is gone.
fn reap(child: Pid) -> Option<u8> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => result = Some(code as u8),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                result = Some(128 + signal as u8)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

/// Renders again; a changed release is announced to the child with SIGHUP, an identical one is
/// reported as `no change`. Failures keep the running release and are only reported. Returns,
/// for an accepted render, whether it read Key Vault secrets (so whether refresh polls are due).
async fn rerender(
    env: &Env,
    templates: &Templates,
    vault: Vault<'_>,
    child: Pid,
    why: &str,
) -> Option<bool> {
    let render = match app::prepare(env.clone(), templates, vault).await {
        Ok(render) => render,
        Err(failure) => {
            eprint!("hydrenv: {why}: new render rejected, keeping the current release\n{failure}");
            return None;
        }
    };
    match crate::cli::publish(&render.settings.shared_root.clone(), &render) {
        Ok(released) if released.switched => {
            eprint!("hydrenv: {why}: {}", crate::cli::describe(&released));
            forward(child, Signal::SIGHUP);
        }
        // Said every time, so an operator (and a test) sees that the poll or the change was
        // looked at, not lost.
        Ok(_) => eprintln!("hydrenv: {why}: no change, the proxy keeps its config"),
        Err(failure) => {
            eprint!("hydrenv: {why}: {failure}");
            return None;
        }
    }
    Some(!render.secret_versions.is_empty())
}

fn watch_env_dir(
    env: &Env,
    changes: tokio::sync::mpsc::Sender<()>,
) -> Result<Option<notify::RecommendedWatcher>, Failure> {
    let Some(dir) = env.get("HYDRENV_ENV_DIR").filter(|d| !d.trim().is_empty()) else {
        return Ok(None);
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = changes.try_send(());
        }
    })
    .map_err(|e| Failure::one(EXIT_INTERNAL, format!("HYDRENV_ENV_DIR: cannot watch: {e}")))?;
    watcher
        .watch(&PathBuf::from(dir), RecursiveMode::NonRecursive)
        .map_err(|e| {
            Failure::one(
                EXIT_INTERNAL,
                format!("HYDRENV_ENV_DIR: cannot watch {dir}: {e}"),
            )
        })?;
    Ok(Some(watcher))
}
