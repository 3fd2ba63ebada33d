//! `mock`: serves mock Azure OpenAI backends until SIGTERM or Ctrl-C (see `mock --help`).
#![allow(clippy::print_stdout)]

use anyhow::Context as _;
use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = mock::cli::Args::parse();
    mock::cli::run(args, |line| println!("{line}"))
        .await
        .context("mock backend failed")
}
