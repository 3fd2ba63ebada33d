//! Running the `proxy` binary in tests: a config file, the process with its stdout log, and a
//! guard that kills it when a test fails.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_proxy");

pub fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A started binary: the process, its API and admin addresses (from the JSON start-up log), and
/// the rest of its log lines once it exits.
pub struct Spawned {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub log: std::thread::JoinHandle<Vec<String>>,
}

/// Starts the binary on `config`.
pub fn spawn_proxy(config: &std::path::Path) -> Spawned {
    spawn_proxy_with(config, &[])
}

/// Starts the binary on `config` with these environment variables added.
pub fn spawn_proxy_with(config: &std::path::Path, env: &[(&str, &std::path::Path)]) -> Spawned {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (addr, admin) = listening(&mut lines);
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    Spawned {
        child,
        addr,
        admin,
        log,
    }
}

/// Reads log lines up to the one that says where the gateway listens.
pub fn listening<R: BufRead>(
    lines: &mut std::io::Lines<R>,
) -> (std::net::SocketAddr, std::net::SocketAddr) {
    loop {
        let line = lines
            .next()
            .expect("proxy exited before listening")
            .unwrap();
        if line.contains("gateway listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let addr = |name: &str| v["fields"][name].as_str().unwrap().parse().unwrap();
            break (addr("addr"), addr("admin_addr"));
        }
    }
}

/// Kills the process when dropped, so a failing test does not leave it running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to the process.
pub fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
