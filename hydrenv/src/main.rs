//! `hydrenv`: parse arguments, run the command, map failures to exit codes.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Parser;
use hydrenv::app::{self, EXIT_CONFIG, EXIT_INTERNAL, Failure, Vault};
use hydrenv::cli::{self, Args, Command};

fn main() -> ExitCode {
    let args = Args::parse();
    let (env, errors) = hydrenv::env::snapshot();
    if !errors.is_empty() {
        let failure = Failure::config(errors.iter().map(ToString::to_string).collect());
        eprint!("{failure}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let result = match args.command {
        Command::Run { templates, command } => runtime.block_on(run(env, templates, command)),
        Command::Supervise { templates, command } => runtime.block_on(async {
            let templates = app::templates(templates.as_deref())?;
            hydrenv::supervise::run(env, templates, command, None)
                .await
                .map(|code| (String::new(), code))
        }),
        command => runtime
            .block_on(cli::execute(command, env))
            .map(|text| (text, 0)),
    };
    match result {
        Ok((text, code)) => {
            #[allow(clippy::print_stdout)]
            {
                print!("{text}");
            }
            ExitCode::from(code)
        }
        Err(failure) => {
            eprint!("{failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// Renders and releases, then replaces this process with the proxy (or the given command).
async fn run(
    env: hydrenv::env::Env,
    templates: Option<std::path::PathBuf>,
    command: Vec<String>,
) -> Result<(String, u8), Failure> {
    let templates = app::templates(templates.as_deref())?;
    let render = app::prepare(env, &templates, Vault::FromEnv).await?;
    let root = render.settings.shared_root.clone();
    let released = cli::publish(&root, &render)?;
    eprint!("hydrenv: {}", cli::describe(&released));
    let command = if command.is_empty() {
        cli::default_command(&root)?
    } else {
        command
    };
    let error = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    Err(Failure::one(
        EXIT_INTERNAL,
        format!("cannot exec {}: {error}", command[0]),
    ))
}
