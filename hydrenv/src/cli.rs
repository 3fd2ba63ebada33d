//! The command line: `render`, `diff`, `check`, `explain`, `run`, `supervise`, `docs`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::app::{self, EXIT_CONFIG, EXIT_INTERNAL, EXIT_UNAVAILABLE, Failure, Vault};
use crate::env::Env;
use crate::release::{self, DiskWriter};

/// Environment + Key Vault → gateway and collector config releases → the proxy.
#[derive(Parser, Debug)]
#[command(name = "hydrenv", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render, validate and write a release under SHARED_ROOT (or --out).
    Render {
        /// Print the redacted render instead of writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Release root instead of SHARED_ROOT.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Templates directory instead of the embedded templates.
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Unified diff between a fresh render and the current release (secrets redacted).
    Diff {
        /// A release directory (or release root) to compare with instead of SHARED_ROOT/current.
        #[arg(long, value_name = "DIR")]
        against: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Validate the environment (secrets resolved, templates rendered and checked); write nothing.
    Check {
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Every variable, its default, current value and meaning; then the routing table.
    Explain,
    /// Print docs/configuration.md.
    Docs,
    /// Render a release, then exec the bundled proxy (or CMD) on it.
    Run {
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
        /// Command to exec instead of the bundled proxy.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Stay the parent of CMD: forward signals, reap children, re-render on changes and SIGHUP it.
    Supervise {
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
        /// Command to run (default: the bundled proxy on the current release).
        #[arg(last = true)]
        command: Vec<String>,
    },
}

/// Output of a command: text for stdout, or a failure.
pub type Outcome = Result<String, Failure>;

/// Runs a command (everything but the `exec` at the end of `run`).
pub async fn execute(command: Command, env: Env) -> Outcome {
    match command {
        Command::Render {
            dry_run,
            out,
            templates,
        } => {
            let templates = app::templates(templates.as_deref())?;
            let render = app::prepare(env, &templates, Vault::FromEnv).await?;
            if dry_run {
                return Ok(render.redacted);
            }
            let root = out.unwrap_or_else(|| render.settings.shared_root.clone());
            let released = publish(&root, &render)?;
            Ok(describe(&released))
        }
        Command::Check { templates } => {
            let templates = app::templates(templates.as_deref())?;
            let render = app::prepare(env, &templates, Vault::FromEnv).await?;
            Ok(format!(
                "ok: {} backends, {} clients\n{}",
                render.settings.backends.len(),
                render.settings.clients.len(),
                crate::explain::routing(&render.shown)
            ))
        }
        Command::Diff { against, templates } => {
            let templates = app::templates(templates.as_deref())?;
            let render = app::prepare(env, &templates, Vault::FromEnv).await?;
            let old = previous_redacted(against.as_deref(), &render.settings.shared_root)?;
            Ok(crate::diff::unified(
                &old,
                &render.redacted,
                "current",
                "fresh render",
            ))
        }
        Command::Explain => {
            let env = app::layer_env_dir(env)?;
            let settings = crate::settings::read(&env, &Default::default()).ok();
            Ok(crate::explain::explain(&env, settings.as_ref()))
        }
        Command::Docs => Ok(crate::explain::configuration_doc()),
        Command::Run { .. } | Command::Supervise { .. } => Err(Failure::one(
            EXIT_INTERNAL,
            "run/supervise are handled by main",
        )),
    }
}

/// Writes the release of a render; storage problems are "dependency unavailable" (69).
pub fn publish(root: &Path, render: &app::Render) -> Result<release::Released, Failure> {
    release::publish(
        root,
        &render.files,
        &render.redacted,
        render.settings.keep_releases,
        &DiskWriter,
    )
    .map_err(|e| Failure::one(EXIT_UNAVAILABLE, e.to_string()))
}

pub fn describe(released: &release::Released) -> String {
    let what = match (released.reused, released.switched) {
        (true, false) => "unchanged: current already is",
        (true, true) => "reused identical release",
        _ => "released",
    };
    format!("{what} {}\n", released.dir.display())
}

fn previous_redacted(against: Option<&Path>, shared_root: &Path) -> Result<String, Failure> {
    let dir = match against {
        Some(dir) if dir.join(release::REDACTED_NAME).is_file() => dir.to_path_buf(),
        Some(root) => release::current_release(root)
            .map_err(|e| Failure::one(EXIT_UNAVAILABLE, e.to_string()))?
            .ok_or_else(|| {
                Failure::one(
                    EXIT_CONFIG,
                    format!("{}: no release to compare with", root.display()),
                )
            })?,
        None => match release::current_release(shared_root)
            .map_err(|e| Failure::one(EXIT_UNAVAILABLE, e.to_string()))?
        {
            Some(dir) => dir,
            None => return Ok(String::new()),
        },
    };
    std::fs::read_to_string(dir.join(release::REDACTED_NAME)).map_err(|e| {
        Failure::one(
            EXIT_UNAVAILABLE,
            format!("{}: {e}", dir.join(release::REDACTED_NAME).display()),
        )
    })
}

/// The proxy command for a release root: the `proxy` binary next to hydrenv, on `current/`.
pub fn default_command(root: &Path) -> Result<Vec<String>, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::one(EXIT_INTERNAL, format!("cannot locate hydrenv itself: {e}")))?;
    let proxy = exe.with_file_name("proxy");
    if !proxy.is_file() {
        return Err(Failure::one(
            EXIT_INTERNAL,
            format!(
                "the bundled proxy is missing: {} (install it next to hydrenv, or give `-- CMD`)",
                proxy.display()
            ),
        ));
    }
    Ok(vec![
        proxy.display().to_string(),
        "--config".into(),
        root.join("current")
            .join("gateway.yaml")
            .display()
            .to_string(),
    ])
}
