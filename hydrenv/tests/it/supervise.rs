//! `hydrenv supervise`: re-render on an env-file change and SIGHUP the child, forward SIGTERM,
//! reap orphans, exit with the child's code. Waits are on events hydrenv or the child report
//! (a file, a line on stderr), never on time passing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Everything a child writes to a pipe, collected by a thread as it arrives.
pub(crate) struct Collected {
    text: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collected {
    pub(crate) fn from(pipe: impl std::io::Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { text, reader }
    }

    pub(crate) fn count(&self, needle: &str) -> usize {
        self.text.lock().unwrap().matches(needle).count()
    }

    /// Everything, once the pipe closed (the child exited).
    pub(crate) fn finish(self) -> String {
        self.reader.join().unwrap();
        Arc::try_unwrap(self.text).unwrap().into_inner().unwrap()
    }
}

/// Children of `pid`: (state, command line).
pub(crate) fn children_of(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let after = stat.rsplit_once(") ")?.1.to_owned();
            let mut fields = after.split(' ');
            let state = fields.next()?.to_owned();
            let ppid = fields.next()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read_to_string(dir.join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            (ppid == pid).then_some((state, cmdline))
        })
        .collect()
}

#[test]
fn rerenders_on_env_file_change_signals_the_child_and_forwards_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let env_dir = tempfile::tempdir().unwrap();
    let marker = root.path().join("hups");
    std::fs::write(env_dir.path().join("AZURE_OPENAI_WEIGHT_0"), "1\n").unwrap();
    let mut vars = minimal(&[]);
    vars.insert(
        "SHARED_ROOT".into(),
        root.path().join("shared").display().to_string(),
    );
    vars.insert(
        "HYDRENV_ENV_DIR".into(),
        env_dir.path().display().to_string(),
    );
    vars.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    vars.insert("MARKER".into(), marker.display().to_string());
    // The child: counts SIGHUPs, leaves an orphan behind, exits 7 on SIGTERM.
    let script = r#"trap 'echo hup >> "$MARKER"' HUP; trap 'exit 7' TERM; (sleep 0.7 &); echo ready >> "$MARKER"; while :; do sleep 0.05; done"#;
    let mut child = Command::new(BIN)
        .args(["supervise", "--", "sh", "-c", script])
        .env_clear()
        .envs(&vars)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Collected::from(child.stderr.take().unwrap());
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_for("the child to start", || read(&marker).contains("ready"));
    let gateway = root.path().join("shared/current/gateway.yaml");
    assert!(read(&gateway).contains("weight: 1"));

    // The orphaned `sleep` is adopted by hydrenv (subreaper), then reaped when it exits: it
    // would otherwise stay listed as a zombie child of hydrenv.
    let orphan = |c: &(String, String)| c.1.starts_with("sleep 0.7");
    wait_for("the orphan to be adopted", || {
        children_of(child.id()).iter().any(orphan)
    });
    wait_for("the orphan to be reaped", || {
        !children_of(child.id()).iter().any(orphan)
    });

    // Change a setting through the env-file directory: new release, then SIGHUP.
    std::fs::write(env_dir.path().join("AZURE_OPENAI_WEIGHT_0"), "3\n").unwrap();
    wait_for("the new release", || read(&gateway).contains("weight: 3"));
    wait_for("SIGHUP to reach the child", || {
        read(&marker).contains("hup")
    });

    let hups = read(&marker).matches("hup").count();
    assert_eq!(hups, 1, "one SIGHUP for one new release");

    // The same value written again: looked at, found unchanged, nothing sent.
    let unchanged = "hydrenv: env-file directory changed: no change";
    let before = stderr.count(unchanged);
    std::fs::write(env_dir.path().join("AZURE_OPENAI_WEIGHT_0"), "3\n").unwrap();
    wait_for("the identical render to be reported", || {
        stderr.count(unchanged) > before
    });

    // A bad change keeps the running release and sends nothing.
    let rejected = "env-file directory changed: new render rejected, keeping the current release";
    std::fs::write(env_dir.path().join("AZURE_OPENAI_WEIGHT_0"), "heavy\n").unwrap();
    wait_for("the bad render to be rejected", || {
        stderr.count(rejected) > 0
    });
    assert!(read(&gateway).contains("weight: 3"));

    // SIGHUP to hydrenv is forwarded.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("forwarded SIGHUP", || {
        read(&marker).matches("hup").count() > hups
    });

    // SIGTERM is forwarded and the child's exit code becomes ours.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    // The child is gone, so its count is final: the forwarded SIGHUP and nothing for the
    // identical and the rejected render.
    assert_eq!(read(&marker).matches("hup").count(), hups + 1);
    let err = stderr.finish();
    assert!(
        err.contains("AZURE_OPENAI_WEIGHT_0: `heavy` is not a whole number"),
        "{err}"
    );
    assert!(err.contains("keeping the current release"), "{err}");
}
