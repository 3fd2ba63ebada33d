//! The container image's entrypoint, run the way a container runs it, without a container engine.
//!
//! The runtime stage of the repository's `Dockerfile` is read (COPY destinations and owners,
//! ENV, USER, EXPOSE, ENTRYPOINT: `image/dockerfile.rs`) and its filesystem laid out under a
//! temporary root: hydrenv and the proxy from this build where the build stage's binaries go,
//! the templates, an empty `SHARED_ROOT` volume owned by the image's user, and the C libraries
//! the distroless base provides. The entrypoint then runs chrooted there, as PID 1 of a new PID
//! namespace, as the image's non-root user (`unshare --pid --fork --mount-proc --root --setuid
//! --setgid`), in front of mock Azure OpenAI backends on 127.0.0.1. What a revision goes
//! through: ready on `/readyz`; SIGTERM while a stream is running, which finishes and the
//! process exits 0; a restart with a changed environment on the same volume, which renders a
//! new release and serves it; and a bad environment, which exits 64 naming the variable and
//! leaves the previous release as it was. Every wait is for an event, with a generous timeout.
//!
//! Needs root and `unshare` (util-linux); without them it says loudly that it skipped
//! (`.config/nextest.toml` shows this test's output even when it passes).

mod dockerfile;
mod layout;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mock::{MockOptions, MockServer};

use crate::supervise::Collected;
use crate::support::tree;
use dockerfile::Runtime;

const DOCKERFILE: &str = include_str!("../../../Dockerfile");
const BACKEND_KEY: &str = "sk-image-test-backend-key";
const CLIENT_KEY: &str = "ck-image-test-client-key";
/// The distroless base image's own `PATH`.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// `unshare`, when this test can run at all; else a loud note and `None`.
fn unshare_or_skip() -> Option<PathBuf> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_owned();
    let unshare = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("unshare"))
            .find(|p| p.is_file())
    });
    if euid == "0"
        && let Some(unshare) = unshare
    {
        return Some(unshare);
    }
    eprintln!(
        "\n{bar}\nSKIPPED image::the_image_entrypoint...: the container entrypoint was NOT tested.\n\
         It needs root and unshare(1) from util-linux (effective uid {euid}, unshare {found}).\n{bar}\n",
        bar = "!".repeat(96),
        found = if unshare.is_some() {
            "found"
        } else {
            "missing"
        },
    );
    None
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The port of a `host:port` default in hydrenv's variable table.
fn default_port(name: &str) -> u16 {
    let var = hydrenv::vars::find(name).unwrap();
    var.default.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// One replica of a revision: the entrypoint as PID 1 of its own PID namespace.
struct Replica {
    /// `None` once waited for.
    unshare: Option<Child>,
    stdout: Option<Collected>,
    stderr: Option<Collected>,
    /// Host PID of the namespace's PID 1, once found.
    init: Option<u32>,
}

impl Replica {
    fn start(
        unshare: &Path,
        image: &Path,
        runtime: &Runtime,
        settings: &BTreeMap<&str, String>,
    ) -> Self {
        let (uid, gid) = runtime.user;
        let mut command = Command::new(unshare);
        command
            .args(["--pid", "--fork", "--kill-child", "--mount-proc=/proc"])
            .arg(format!("--root={}", image.display()))
            .arg(format!("--wd={}", runtime.workdir))
            .arg(format!("--setuid={uid}"))
            .arg(format!("--setgid={gid}"))
            .arg("--")
            .args(&runtime.entrypoint)
            .args(&runtime.cmd)
            .env_clear()
            .env("PATH", BASE_PATH)
            .envs(&runtime.env)
            .envs(settings)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut unshare = command.spawn().unwrap();
        let stdout = Some(Collected::from(unshare.stdout.take().unwrap()));
        let stderr = Some(Collected::from(unshare.stderr.take().unwrap()));
        Self {
            unshare: Some(unshare),
            stdout,
            stderr,
            init: None,
        }
    }

    /// PID 1 of the namespace, as seen from here: the child of `unshare`.
    fn init(&mut self) -> u32 {
        if let Some(pid) = self.init {
            return pid;
        }
        let parent = self.unshare.as_ref().unwrap().id();
        let pid = wait_for("the entrypoint to start", || {
            std::fs::read_dir("/proc").unwrap().find_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid: u32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
                (ppid == parent).then_some(pid)
            })
        });
        self.init = Some(pid);
        pid
    }

    fn signal(&mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.init() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Exit code (unshare exits with its child's), stdout and stderr.
    async fn exit(mut self) -> (Option<i32>, String, String) {
        let mut unshare = self.unshare.take().unwrap();
        let status = tokio::task::spawn_blocking(move || unshare.wait().unwrap())
            .await
            .unwrap();
        // Reaped with its namespace: nothing left for Drop to kill (the PID may be reused).
        self.init = None;
        let stdout = self.stdout.take().unwrap().finish();
        let stderr = self.stderr.take().unwrap().finish();
        (status.code(), stdout, stderr)
    }

    fn exited(&mut self) -> bool {
        let unshare = self.unshare.as_mut().unwrap();
        unshare.try_wait().unwrap().is_some()
    }
}

impl Drop for Replica {
    /// A failed assertion must not leave the namespace running: its PID 1 (which may run as
    /// another user, so `--kill-child` cannot be counted on) and unshare are killed.
    fn drop(&mut self) {
        if let Some(pid) = self.init {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(unshare) = self.unshare.as_mut() {
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
    }
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

async fn get(client: &Http, url: String) -> Option<u16> {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.ok()?;
    Some(response.status().as_u16())
}

fn chat(addr: SocketAddr, stream: bool) -> http::Request<Full<Bytes>> {
    let body = if stream {
        r#"{"stream":true,"messages":[{"role":"user","content":"image"}]}"#
    } else {
        r#"{"messages":[{"role":"user","content":"image"}]}"#
    };
    http::Request::post(format!(
        "http://{addr}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    ))
    .header("content-type", "application/json")
    .header("api-key", CLIENT_KEY)
    .body(Full::new(Bytes::from_static(body.as_bytes())))
    .unwrap()
}

/// Waits until the replica's admin listener says ready; fails with its output if it exits.
async fn ready(client: &Http, replica: &mut Replica, admin: SocketAddr) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while get(client, format!("http://{admin}/readyz")).await != Some(200) {
        if replica.exited() {
            let stderr = replica.stderr.take().unwrap().finish();
            panic!("the entrypoint exited before it was ready:\n{stderr}");
        }
        assert!(Instant::now() < give_up, "not ready on {admin}/readyz");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A revision's settings: the environment Container Apps gives the main container.
fn settings(
    backend: &MockServer,
    name: &str,
    api: SocketAddr,
    admin: SocketAddr,
) -> BTreeMap<&'static str, String> {
    [
        ("AZURE_OPENAI_ENDPOINT_0", backend.url()),
        ("AZURE_OPENAI_KEY_0", BACKEND_KEY.into()),
        ("AZURE_OPENAI_NAME_0", name.into()),
        ("GATEWAY_CLIENT_NAME_0", "image-test".into()),
        ("GATEWAY_CLIENT_KEY_0", CLIENT_KEY.into()),
        ("GATEWAY_REQUIRE_AUTH", "true".into()),
        ("GATEWAY_LISTEN", api.to_string()),
        ("GATEWAY_ADMIN_LISTEN", admin.to_string()),
    ]
    .into_iter()
    .collect()
}

fn backend(name: &str) -> MockOptions {
    MockOptions {
        name: name.into(),
        chunk_count: 40,
        chunk_interval: Duration::from_millis(50),
        api_key: Some(BACKEND_KEY.into()),
        ..MockOptions::default()
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [BACKEND_KEY, CLIENT_KEY] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_entrypoint_runs_as_pid_1_drains_on_sigterm_and_rolls_to_a_new_revision() {
    let Some(unshare) = unshare_or_skip() else {
        return;
    };
    let runtime =
        dockerfile::runtime_stage(DOCKERFILE).unwrap_or_else(|e| panic!("Dockerfile: {e}"));

    // What the platform (terraform/30-workload) relies on: a distroless base (whose libraries
    // are laid out below), a numeric non-root user, the listeners' default ports exposed, and
    // SHARED_ROOT on a directory of the image that user owns (the volume's mount point).
    assert!(
        runtime.base.starts_with("gcr.io/distroless/cc-"),
        "{}",
        runtime.base
    );
    assert_ne!(runtime.user.0, 0, "the image runs as root");
    let mut exposed = runtime.expose.clone();
    exposed.sort_unstable();
    let mut listeners = vec![
        default_port("GATEWAY_LISTEN"),
        default_port("GATEWAY_ADMIN_LISTEN"),
    ];
    listeners.sort_unstable();
    assert_eq!(
        exposed, listeners,
        "EXPOSE differs from the listeners' default ports"
    );
    let shared_root = runtime
        .env
        .get("SHARED_ROOT")
        .expect("ENV SHARED_ROOT")
        .clone();
    let volume = runtime
        .copies
        .iter()
        .find(|c| c.dest.trim_end_matches('/') == shared_root)
        .expect("the image has no directory at SHARED_ROOT");
    assert_eq!(
        volume.chown,
        Some(runtime.user),
        "SHARED_ROOT is not owned by the image's user"
    );

    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("rootfs");
    std::fs::create_dir(&image).unwrap();
    layout::lay_out(&runtime, &image, scratch.path());
    let volume_dir = image.join(shared_root.trim_start_matches('/'));

    let eus = MockServer::start(backend("eus")).await.unwrap();
    let wus = MockServer::start(backend("wus")).await.unwrap();
    let client: Http = Client::builder(TokioExecutor::new()).build_http();

    // Revision 1: ready, PID 1, the image's user; a stream in flight when SIGTERM comes.
    let (api, admin) = (free_addr(), free_addr());
    let mut replica = Replica::start(
        &unshare,
        &image,
        &runtime,
        &settings(&eus, "eus", api, admin),
    );
    ready(&client, &mut replica, admin).await;
    let init = replica.init();
    assert_eq!(
        status_field(init, "NSpid:").split_whitespace().last(),
        Some("1")
    );
    let (uid, gid) = runtime.user;
    assert_eq!(
        status_field(init, "Uid:"),
        format!("{uid}\t{uid}\t{uid}\t{uid}")
    );
    assert_eq!(
        status_field(init, "Gid:"),
        format!("{gid}\t{gid}\t{gid}\t{gid}")
    );
    assert_eq!(
        status_field(init, "Groups:"),
        "",
        "supplementary groups kept"
    );
    // hydrenv exec'd the proxy next to it: PID 1 is the proxy now, on the current release.
    let cmdline = std::fs::read_to_string(format!("/proc/{init}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    let entry_dir = Path::new(&runtime.entrypoint[0]).parent().unwrap();
    assert_eq!(
        cmdline.trim_end(),
        format!(
            "{} --config {shared_root}/current/gateway.yaml",
            entry_dir.join("proxy").display()
        )
    );
    let first = std::fs::canonicalize(volume_dir.join("current")).unwrap();
    let meta = std::fs::metadata(first.join("gateway.yaml")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            meta.permissions().mode() & 0o777
        ),
        (uid, 0o600)
    );

    let response = client.request(chat(api, false)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mock-backend"], "eus");

    let (first_event, first_event_seen) = tokio::sync::oneshot::channel();
    let stream = tokio::spawn({
        let client = client.clone();
        async move {
            let response = client.request(chat(api, true)).await.unwrap();
            assert_eq!(response.status(), 200);
            let mut body = response.into_body();
            let mut text = String::new();
            let mut first_event = Some(first_event);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
                if text.contains("data: ")
                    && let Some(tell) = first_event.take()
                {
                    let _ = tell.send(());
                }
            }
            text
        }
    });
    first_event_seen.await.expect("the stream started");
    replica.signal(nix::sys::signal::Signal::SIGTERM);
    let text = stream.await.unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the stream was cut by SIGTERM:\n{text}"
    );
    assert!(!text.contains("event: error"), "{text}");
    let (code, stdout, stderr) = replica.exit().await;
    assert_eq!(code, Some(0), "exit after SIGTERM\n{stderr}");
    assert_no_secret("revision 1's output", &(stdout + &stderr));
    let after_first = tree(&volume_dir);

    // Revision 2: the settings changed (the backend moved); same volume. A new release,
    // served; the first one kept as it was.
    let (api, admin) = (free_addr(), free_addr());
    let mut replica = Replica::start(
        &unshare,
        &image,
        &runtime,
        &settings(&wus, "wus", api, admin),
    );
    ready(&client, &mut replica, admin).await;
    let response = client.request(chat(api, false)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mock-backend"], "wus");
    assert_eq!(response.headers()["x-gateway-backend"], "wus");
    let second = std::fs::canonicalize(volume_dir.join("current")).unwrap();
    assert_ne!(first, second, "no new release for a changed environment");
    let first_name = first
        .strip_prefix(&volume_dir)
        .unwrap()
        .display()
        .to_string();
    let after_second = tree(&volume_dir);
    for (path, contents) in after_first
        .iter()
        .filter(|(p, _)| p.starts_with(&first_name))
    {
        assert_eq!(after_second.get(path), Some(contents), "{path} changed");
    }
    replica.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, stdout, stderr) = replica.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_no_secret("revision 2's output", &(stdout + &stderr));

    // Revision 3: a bad setting. Exit 64 naming it, never ready, the volume untouched.
    let (api, admin) = (free_addr(), free_addr());
    let mut bad = settings(&eus, "eus", api, admin);
    bad.insert("AZURE_OPENAI_WEIGHT_0", "heavy".into());
    let replica = Replica::start(&unshare, &image, &runtime, &bad);
    let (code, stdout, stderr) = replica.exit().await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("AZURE_OPENAI_WEIGHT_0"), "{stderr}");
    assert_no_secret("revision 3's output", &(stdout + &stderr));
    assert_eq!(
        tree(&volume_dir),
        after_second,
        "a refused environment changed the volume"
    );
    assert_eq!(
        std::fs::canonicalize(volume_dir.join("current")).unwrap(),
        second
    );
    assert_eq!(get(&client, format!("http://{admin}/readyz")).await, None);
}
