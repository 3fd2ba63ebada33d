"""Processes and tools of the benchmark: the mock backend, the gateway, nginx, wrk and loadgen,
each pinned to its core, plus the facts about the machine. Everything listens on 127.0.0.1.

Every command line that is run is recorded in `Harness.commands`, so the report can list them.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Core layout (2 cores): the systems under test (mock, gateway, nginx) share core 0, the load
# generators (wrk, loadgen) and this driver run on core 1. Direct and proxied runs then cross
# the same number of cores, so "added" latency is the proxy's own work.
SERVER_CPUS = "0"
LOAD_CPUS = "1"

CHAT_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
CHAT_BODY = json.dumps({"messages": [{"role": "user", "content": "hello"}]}, separators=(",", ":"))
STREAM_BODY = json.dumps(
    {"stream": True, "messages": [{"role": "user", "content": "hello"}]}, separators=(",", ":")
)
BACKEND_KEY = "bench-backend-key"
CLIENT_KEY = "bench-client-key"


class HarnessError(RuntimeError):
    """The harness itself broke (a process did not start, a tool failed): exit non-zero."""


class Harness:
    """Starts and stops processes, runs tools, records every command."""

    def __init__(self, bin_dir: Path, work: Path, pin: bool):
        self.bin_dir = bin_dir
        self.work = work
        self.pin = pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
        self.commands: list[str] = []
        self.procs: list[Proc] = []
        self._scripts: dict[tuple[str, str], Path] = {}

    @classmethod
    def for_script(cls, name: str, bin_dir: Path | None = None) -> Harness:
        """The harness of a standalone script (compare, cpusplit, pgo_train): scratch files in
        `target/bench-work/<name>-<ms>/`, mock and loadgen from `bin_dir` (default
        `target/release`), and the calling process pinned to the load core, off the servers'."""
        root = Path(__file__).resolve().parent.parent
        work = root / "target" / "bench-work" / f"{name}-{int(time.time() * 1000)}"
        work.mkdir(parents=True)
        h = cls((bin_dir or root / "target" / "release").resolve(), work, pin=True)
        if h.pin:
            os.sched_setaffinity(0, {int(LOAD_CPUS)})
        return h

    def bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise HarnessError(f"{path} is missing (build it first: see bench/README.md)")
        return str(path)

    def pinned(self, argv: list[str], cpus: str) -> list[str]:
        return ["taskset", "-c", cpus, *argv] if self.pin else list(argv)

    def record(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        self.commands.append((f"env -i PATH=$PATH {prefix} " if prefix else "") + shlex.join(argv))

    def run_tool(
        self,
        argv: list[str],
        cpus: str = LOAD_CPUS,
        timeout: float = 600,
        stdin: Path | None = None,
    ) -> str:
        """Runs a tool to its end (on the load core unless told), its input from `stdin` if
        given; returns its output."""
        full = self.pinned(argv, cpus)
        self.record(full)
        if stdin is not None:
            self.commands[-1] += f" < {shlex.quote(str(stdin))}"
        with open(stdin or os.devnull, "rb") as source:
            done = subprocess.run(full, stdin=source, capture_output=True, timeout=timeout)
        done.stdout, done.stderr = (
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )
        if done.returncode != 0:
            raise HarnessError(
                f"{shlex.join(full)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        return done.stdout

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    # ---- load generators -------------------------------------------------------------------

    def wrk(self, url: str, key: str, body: str, conns: int, seconds: int) -> dict:
        """wrk with one thread; returns requests/s, latency percentiles (µs) and errors."""
        script = self._wrk_script(key, body)
        out = self.run_tool(
            [
                "wrk",
                "-t1",
                f"-c{conns}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                str(script),
                url,
            ],
            timeout=seconds + 60,
        )
        match = re.search(r"^BENCH_JSON (.*)$", out, re.M)
        if not match:
            raise HarnessError(f"wrk printed no summary:\n{out}")
        result = json.loads(match.group(1))
        # Only answers that succeeded count: a proxy answering fast errors must not look fast.
        result["rps"] = (result["requests"] - result["status"]) / (result["duration_us"] / 1e6)
        result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
        return result

    def paired(
        self, targets: dict[str, tuple[str, str]], body: str, seconds: float, turn: int = 1
    ) -> dict:
        """loadgen at concurrency 1 taking turns between targets, `turn` requests each (the
        first of a turn not measured when more than one); per target: errors and latency
        percentiles (µs)."""
        argv = [self.bin("loadgen"), "paired", "--body", body, "--duration", str(seconds)]
        argv += ["--turn", str(turn)]
        for name, (url, key) in targets.items():
            argv += ["--target", f"{name}={url}", "--key", key]
        return json.loads(self.run_tool(argv))["targets"]

    def _wrk_script(self, key: str, body: str) -> Path:
        if (key, body) not in self._scripts:
            path = self.work / f"wrk-{len(self._scripts)}.lua"
            path.write_text(
                "-- POST a chat completion; print a JSON summary line at the end.\n"
                'wrk.method = "POST"\n'
                f"wrk.body = {lua_string(body)}\n"
                'wrk.headers["content-type"] = "application/json"\n'
                f'wrk.headers["api-key"] = {lua_string(key)}\n'
                "done = function(summary, latency, requests)\n"
                "  local e = summary.errors\n"
                '  io.write(string.format(\'BENCH_JSON {"requests":%d,"duration_us":%d,'
                '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
                '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\\n\',\n'
                "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,\n"
                "    e.timeout, latency:percentile(50), latency:percentile(90),\n"
                "    latency:percentile(99), latency:percentile(99.9), latency.max,\n"
                "    latency.mean))\n"
                "end\n"
            )
            self._scripts[(key, body)] = path
        return self._scripts[(key, body)]

    def rate(self, url: str, key: str, body: str, *flags: str) -> dict:
        """loadgen open-loop run (see bench/src/rate.rs)."""
        argv = [self.bin("loadgen"), "rate", "--url", url, "--header", f"api-key: {key}"]
        argv += ["--body", body, *flags]
        return json.loads(self.run_tool(argv))

    def streams(
        self, targets: dict[str, tuple[str, str]], count: int, ramp_ms: int, interval_ms: int
    ) -> dict:
        """loadgen SSE streams dealt out over the targets in turn; figures per target."""
        argv = [
            self.bin("loadgen"),
            "streams",
            "--body",
            STREAM_BODY,
            "--streams",
            str(count),
            "--ramp-ms",
            str(ramp_ms),
            "--interval-ms",
            str(interval_ms),
        ]
        for name, (url, key) in targets.items():
            argv += ["--target", f"{name}={url}", "--key", key]
        return json.loads(self.run_tool(argv))["targets"]

    # ---- servers -----------------------------------------------------------------------------

    def start_mock(self, name: str, *flags: str) -> tuple[Proc, list[str]]:
        """A mock Azure OpenAI backend on core 0; returns it and its URL(s)."""
        argv = [self.bin("mock"), "--listen", "127.0.0.1:0", "--name", name]
        argv += ["--api-key", BACKEND_KEY, *flags]
        proc = Proc(self, name, argv, SERVER_CPUS)
        instances = int(flags[flags.index("--instances") + 1]) if "--instances" in flags else 1
        return proc, listening(proc, instances)

    def start_relay(self, name: str, backend: str, redis_call: tuple[int, str] | None = None):
        """`loadgen relay` on core 0 in front of `backend` (a URL), with one Redis round trip
        per request when `redis_call` is `(port, command)`; returns it and its URL."""
        host, port, _ = split_url(backend)
        argv = [self.bin("loadgen"), "relay", "--backend", f"{host}:{port}"]
        if redis_call:
            port, command = redis_call
            argv += ["--redis", f"127.0.0.1:{port}", "--call", command]
        proc = Proc(self, name, argv, SERVER_CPUS)
        return proc, listening(proc, 1)[0]

    @property
    def launcher(self) -> str:
        """How `start_gateway()` starts the gateway."""
        return "hydrenv run" if (self.bin_dir / "hydrenv").exists() else "proxy --config"

    def start_gateway(self, name: str, setup: GatewaySetup) -> Proc:
        """Starts the gateway the way users start it: `hydrenv run` with the environment of
        `setup` (shared/spec/env.md; hydrenv renders a release under SHARED_ROOT and execs the
        proxy next to it on that release). Without a hydrenv binary in the bin directory, or
        for a setup that asks for its config file (`config_file`, or `limits`, which hydrenv
        does not render yet), the proxy is started directly on the gateway rendered as YAML."""
        if self.launcher == "hydrenv run" and not (setup.config_file or setup.limits):
            shared = self.work / "gateways" / name / "shared"
            shared.parent.mkdir(parents=True, exist_ok=True)
            # Only what the gateway needs: the run does not depend on the caller's environment.
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **setup.env(shared)}
            return Proc(self, name, [self.bin("hydrenv"), "run"], SERVER_CPUS, env)
        config = self.gateway_config(name, setup)
        return Proc(self, name, [self.bin("proxy"), "--config", str(config)], SERVER_CPUS)

    def gateway_config(self, name: str, setup: GatewaySetup) -> Path:
        """Writes `<work>/gateways/<name>/gateway.yaml`. The gateway watches its config's
        directory and the one above for changes (hot reload), so configs live apart from the
        logs that are written during the run."""
        directory = self.work / "gateways" / name
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "gateway.yaml"
        config.write_text(setup.yaml())
        return config

    def start_nginx(self, name: str, upstreams: dict[str, str]) -> tuple[Proc, dict[str, int]]:
        """nginx (one worker, core 0) with one port per upstream URL; returns it and the ports."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        prefix = self.work / name
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        ports = {label: free_port() for label in upstreams}
        servers = []
        for label, url in upstreams.items():
            host = url.removeprefix("http://").rstrip("/")
            servers.append(NGINX_SERVER.format(label=label, host=host, port=ports[label]))
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, key=BACKEND_KEY, servers="".join(servers)))
        argv = [nginx, "-e", str(prefix / "logs" / "error.log"), "-p", str(prefix), "-c", str(conf)]
        proc = Proc(self, name, argv, SERVER_CPUS)
        for port in ports.values():
            wait_port(port, proc)
        return proc, ports


    def start_redis(self, name: str) -> tuple[Proc, int]:
        """redis-server on a free port of 127.0.0.1 (core 0, with the other servers), nothing
        saved to disk; returns it and its port. Stopped with the other processes."""
        redis = shutil.which("redis-server")
        if not redis:
            raise HarnessError("redis-server is not installed (bench/run.sh installs it)")
        port = free_port()
        argv = [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        argv += ["no", "--dir", str(self.work)]
        proc = Proc(self, name, argv, SERVER_CPUS)
        wait_port(port, proc)
        return proc, port

    def redis_benchmark(self, port: int, requests: int, *command: str, cpus: str = LOAD_CPUS):
        """`redis-benchmark -c 1` (one call at a time): per test, calls/s and latency
        percentiles in µs (its CSV gives ms with --precision 3, so 1 µs resolution)."""
        argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests)]
        argv += ["-c", "1", "--precision", "3", "--csv", *command]
        out = self.run_tool(argv, cpus=cpus, timeout=300)
        rows = list(csv.reader(out.splitlines()))
        if len(rows) < 2 or rows[0][:2] != ["test", "rps"]:
            raise HarnessError(f"redis-benchmark printed no CSV:\n{out}")
        tests = {}
        for row in rows[1:]:
            figures = dict(zip(rows[0][1:], (float(v) for v in row[1:]), strict=True))
            tests[row[0]] = {
                "rps": figures["rps"],
                **{
                    f"{k}_us": round(figures[f"{k}_latency_ms"] * 1000)
                    for k in ("avg", "min", "p50", "p95", "p99", "max")
                },
            }
        return tests

    def redis_cli(self, port: int, *command: str, stdin: Path | None = None) -> str:
        """`redis-cli`; with `stdin`, its content is the command's last argument (`-x`)."""
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *(["-x"] if stdin else [])]
        return self.run_tool([*argv, *command], stdin=stdin)


NGINX_CONF = """# nginx: a plain L7 reverse proxy in front of the same mock backends (the baseline).
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header api-key "{key}";
  proxy_buffering off;
  proxy_read_timeout 300s;
  client_body_buffer_size 64k;
{servers}}}
"""

NGINX_SERVER = """  upstream {label} {{ server {host}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    location / {{ proxy_pass http://{label}; }}
  }}
"""


@dataclass
class Backend:
    name: str
    url: str
    priority: int = 5


@dataclass
class GatewaySetup:
    """One gateway: its backends and listeners. Rendered as the config file the proxy reads
    today, or as the environment `hydrenv run` reads (shared/spec/env.md)."""

    backends: list[Backend]
    listen_port: int = field(default_factory=lambda: free_port())
    admin_port: int = field(default_factory=lambda: free_port())
    active_health: bool = False
    # The `limits:` section as one YAML flow mapping (see proxy/src/stages/limits/config.rs),
    # or None for no limits.
    limits: str | None = None
    # Start the proxy on its config file even when hydrenv is there (same start for every
    # gateway of a comparison when one of them needs the config file).
    config_file: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/readyz"

    def yaml(self) -> str:
        lines = [
            "# Rendered by bench/harness.py (GatewaySetup.yaml).",
            "version: 1",
            "server:",
            f"  listen: 127.0.0.1:{self.listen_port}",
            f"  admin_listen: 127.0.0.1:{self.admin_port}",
            "upstream:",
            f"  active_health: {{ enabled: {str(self.active_health).lower()} }}",
            "backends:",
        ]
        for b in self.backends:
            lines.append(
                f'  - {{ name: {b.name}, endpoint: "{b.url}", priority: {b.priority}, '
                f"auth: {{ mode: api-key, api_key: {BACKEND_KEY} }} }}"
            )
        lines += [
            "clients:",
            "  require_auth: true",
            f"  consumers: [ {{ name: bench, key: {CLIENT_KEY} }} ]",
            "log: { level: info, access: false }",
        ]
        if self.limits:
            lines.append(f"limits: {self.limits}")
        return "\n".join(lines) + "\n"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/metrics"

    def env(self, shared_root: Path) -> dict[str, str]:
        """The same gateway as the environment contract (for `hydrenv run`)."""
        env = {
            "GATEWAY_LISTEN": f"127.0.0.1:{self.listen_port}",
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "SHARED_ROOT": str(shared_root),
            "GATEWAY_REQUIRE_AUTH": "true",
            "GATEWAY_CLIENT_NAME_0": "bench",
            "GATEWAY_CLIENT_KEY_0": CLIENT_KEY,
            "APISIX_ACTIVE_HEALTH_CHECKS": str(self.active_health).lower(),
        }
        for i, b in enumerate(self.backends):
            env[f"AZURE_OPENAI_ENDPOINT_{i}"] = b.url
            env[f"AZURE_OPENAI_KEY_{i}"] = BACKEND_KEY
            env[f"AZURE_OPENAI_NAME_{i}"] = b.name
            env[f"AZURE_OPENAI_PRIORITY_{i}"] = str(b.priority)
        return env


def listening(proc: Proc, count: int) -> list[str]:
    """The URLs a server process reports ("listening on http://..."), once it has `count`."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        urls = re.findall(r"listening on (http://[0-9.:]+)", proc.output())
        if len(urls) >= count:
            return urls
        proc.check_alive()
        time.sleep(0.01)
    raise HarnessError(f"{proc.name} did not report its address:\n{proc.output()}")


class Proc:
    """A long-running server process (pinned), its output in `<work>/<name>.log`."""

    def __init__(self, h: Harness, name: str, argv: list[str], cpus: str, env=None):
        self.name = name
        self.log_path = h.work / f"{name}.log"
        full = h.pinned(argv, cpus)
        h.record(full, {k: v for k, v in (env or {}).items() if k != "PATH"})
        with open(self.log_path, "wb") as log:
            self.spawned = time.perf_counter()
            # taskset execs the program: the pid is the server's own.
            self.popen = subprocess.Popen(
                full, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        h.procs.append(self)
        self._harness = h

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise HarnessError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-3000:]}"
            )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # The whole process group (its own session): nginx workers too.
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self in self._harness.procs:
            self._harness.procs.remove(self)

    def tree(self) -> list[int]:
        """This process and its descendants (nginx workers)."""
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    todo.extend(int(c) for c in children)
            except OSError:
                continue
        return pids

    def rss_kib(self) -> int:
        """Resident memory of the process tree, KiB."""
        total = 0
        for pid in self.tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            total += int(match.group(1)) if match else 0
        return total

    def cpu_seconds(self) -> float:
        """CPU time of the process tree so far: the nanosecond run time of every thread
        (`/proc/<pid>/task/<tid>/schedstat`), not the 10 ms ticks of `/proc/<pid>/stat`."""
        return self._per_thread("schedstat", lambda text: int(text.split()[0])) / 1e9

    def user_seconds(self) -> float:
        """User-mode CPU time of the process tree so far (clock ticks of
        `/proc/<pid>/task/<tid>/stat`): what a change to the gateway's own code moves, without
        the kernel's network work, which varies more from run to run."""
        ticks = self._per_thread("stat", lambda text: int(text.rsplit(")", 1)[1].split()[11]))
        return ticks / os.sysconf("SC_CLK_TCK")

    def context_switches(self) -> tuple[int, int]:
        """Voluntary (it waited) and involuntary (it was preempted) context switches of the
        process tree so far (`/proc/<pid>/task/<tid>/status`)."""

        def count(key: str):
            def read(text: str) -> int:
                for line in text.splitlines():
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
                raise ValueError(key)

            return read

        return (
            self._per_thread("status", count("voluntary_ctxt_switches")),
            self._per_thread("status", count("nonvoluntary_ctxt_switches")),
        )

    def _per_thread(self, name: str, read) -> int:
        """Sum of `read(/proc/<pid>/task/<tid>/<name>)` over every thread of the process tree
        (threads that end meanwhile are skipped)."""
        total = 0
        for pid in self.tree():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    total += read(Path(f"/proc/{pid}/task/{tid}/{name}").read_text())
                except (OSError, IndexError, ValueError):
                    continue
        return total


def wait_ready(url: str, proc: Proc, timeout: float = 20, pause: float = 0.0005) -> float:
    """Polls `url` until it answers 200; returns seconds since the process was spawned."""
    host, port, path = split_url(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return time.perf_counter() - proc.spawned
        except OSError:
            pass
        finally:
            conn.close()
        proc.check_alive()
        time.sleep(pause)
    raise HarnessError(f"{proc.name}: {url} not ready after {timeout}s:\n{proc.output()[-3000:]}")


def wait_port(port: int, proc: Proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        proc.check_alive()
        time.sleep(0.01)
    raise HarnessError(f"{proc.name}: port {port} not open after {timeout}s:\n{proc.output()}")


def post(url: str, key: str, body: str) -> tuple[int, dict[str, str], bytes]:
    """One request with the standard library (sanity checks before measuring)."""
    host, port, path = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", path, body, {"content-type": "application/json", "api-key": key})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get(url: str) -> tuple[int, str]:
    """One GET with the standard library (the admin /metrics)."""
    host, port, path = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def metric_sum(text: str, name: str) -> float | None:
    """Sum over every series of one metric in Prometheus text (None: no series)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def split_url(url: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)?", url)
    if not match:
        raise HarnessError(f"not a loopback http URL: {url}")
    return match.group(1), int(match.group(2)), match.group(3) or "/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def machine() -> dict:
    """What the numbers were measured on."""

    def first(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    os_name = re.search(r'^PRETTY_NAME="(.*)"', Path("/etc/os-release").read_text(), re.M)
    return {
        "cpu_model": cpu.group(1) if cpu else "unknown",
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": os.uname().release,
        "os": os_name.group(1) if os_name else "unknown",
        "virtualization": hypervisor(),
        "nginx": first(["nginx", "-v"]),
        "wrk": first(["wrk", "-v"]),
        "rustc": first(["rustc", "-V"]),
        "git": first(["git", "describe", "--always", "--dirty", "--abbrev=12"]),
    }


def hypervisor() -> str:
    try:
        done = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown"
    vendor = re.search(r"^Hypervisor vendor:\s*(.*)$", done, re.M)
    return f"{vendor.group(1)} VM" if vendor else "bare metal or unknown"


class ForeignLoad:
    """Samples the CPU time used by processes that are not ours (the machine is shared), so each
    case can say how much of the machine something else took while it ran. Kernel threads are
    counted apart: they mostly work for the benchmark itself (network, memory)."""

    def __init__(self, interval: float = 0.5):
        import threading

        self.interval = interval
        self.total = 0.0  # CPU seconds of foreign user processes since start
        self.kernel = 0.0  # CPU seconds of kernel threads since start
        self.busiest: dict[str, float] = {}
        self._last: dict[int, tuple[int, float]] = {}  # pid -> (start time, cpu seconds)
        self._primed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        stats: dict[int, tuple[int, str, int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = text[text.find("(") + 1 : text.rfind(")")]
            fields = text.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / self._ticks
            stats[int(entry)] = (int(fields[1]), comm, int(fields[19]), cpu)
        ours, kernel = {os.getpid()}, {2}
        changed = True
        while changed:  # descendants of this driver, and of kthreadd
            changed = False
            for pid, (ppid, *_rest) in stats.items():
                for group in (ours, kernel):
                    if ppid in group and pid not in group:
                        group.add(pid)
                        changed = True
        current = {}
        for pid, (_, comm, started, cpu) in stats.items():
            if pid in ours:
                continue
            current[pid] = (started, cpu)
            before = self._last.get(pid)
            if before and before[0] == started:
                used = cpu - before[1]
            else:  # started since the last sample (all of its time is new), or the first sample
                used = cpu if self._primed else 0.0
            if used <= 0:
                continue
            if pid in kernel:
                self.kernel += used
            else:
                self.total += used
                self.busiest[comm] = self.busiest.get(comm, 0.0) + used
        self._last = current
        self._primed = True

    def top(self, n: int = 5) -> list[str]:
        ranked = sorted(self.busiest.items(), key=lambda kv: -kv[1])[:n]
        return [f"{comm} {cpu:.1f}s" for comm, cpu in ranked]
