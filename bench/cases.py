"""The seven cases of shared/spec/performance.md, plus the profile of one request path and the
guardrails' cost (`limits`, in bench/guardrails.py).

Each case measures the gateway side by side with nginx and with the mock called directly, in the
same run, several repetitions interleaved (so slow drift on a shared machine hits every target
alike), and keeps every raw figure. Summaries are medians over repetitions.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

import guardrails
from harness import (
    BACKEND_KEY,
    CHAT_BODY,
    CHAT_PATH,
    CLIENT_KEY,
    LOAD_CPUS,
    STREAM_BODY,
    Backend,
    GatewaySetup,
    Harness,
    HarnessError,
    Proc,
    post,
    wait_ready,
)


@dataclass(frozen=True)
class Plan:
    """How long and how often each case runs."""

    name: str
    reps: int
    wrk_seconds: int  # case 2: one wrk run
    paired_seconds: float  # cases 1, 5: one paired run (all targets taking turns)
    warmup_seconds: int  # one unrecorded wrk run per target first (0 = none)
    conns: int  # case 2: connections at saturation
    rate_seconds: float  # case 3: measured part of one rate probe
    rate_warmup: float
    rate_start: float  # first probe when case 2 did not run (else a fraction of its req/s)
    rate_max: float
    rate_bisections: int
    rate_settle: float  # seconds of quiet after a failed probe (the overload drains first)
    ttft_streams: int  # case 4: streams per target of the TTFT / inter-chunk run
    ttft_ramp_ms: int
    stream_levels: tuple[int, ...]  # case 4: concurrency sweep
    sweep_reps: int
    level_tries: int  # runs per level before it counts as failed
    stream_ramp_ms: int
    memory_streams: int  # case 6
    startup_runs: int  # case 7
    startup_backends: tuple[int, ...]
    profile_seconds: int  # 0 = no profile


FULL = Plan(
    name="full",
    reps=3,
    wrk_seconds=5,
    paired_seconds=6,
    warmup_seconds=1,
    conns=64,
    rate_seconds=1.5,
    rate_warmup=0.3,
    rate_start=4000,
    rate_max=200_000,
    rate_bisections=2,
    rate_settle=1.0,
    ttft_streams=400,
    ttft_ramp_ms=8000,
    stream_levels=(256, 512, 1024, 1536, 2048),
    sweep_reps=1,
    level_tries=3,
    stream_ramp_ms=800,
    memory_streams=1000,
    startup_runs=10,
    startup_backends=(2, 50),
    profile_seconds=4,
)

SMOKE = Plan(
    name="smoke",
    reps=1,
    wrk_seconds=1,
    paired_seconds=0.5,
    warmup_seconds=0,
    conns=8,
    rate_seconds=0.5,
    rate_warmup=0.2,
    rate_start=200,
    rate_max=300,
    rate_bisections=0,
    rate_settle=0.0,
    ttft_streams=4,
    ttft_ramp_ms=100,
    stream_levels=(16,),
    sweep_reps=1,
    level_tries=1,
    stream_ramp_ms=50,
    memory_streams=16,
    startup_runs=1,
    startup_backends=(2, 50),
    profile_seconds=0,
)

# Case 3 starts its search at this fraction of the target's case-2 req/s (closed loop, instant
# mock): a 20 ms backend roughly halves what a proxy sustains (more connections in flight).
RATE_FIRST_FRACTION = 0.35
STREAM_INTERVAL_MS = 20
STREAM_DELTAS = 64
SLOW_MS = 20


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class Bench:
    """The servers every case shares and the cases themselves."""

    def __init__(self, h: Harness, plan: Plan, log):
        self.h = h
        self.plan = plan
        self.log = log
        self.throughput: dict[str, float] = {}  # case 2 median req/s per target

    # ---- shared servers ----------------------------------------------------------------------

    def start_backends(self) -> dict:
        """Mocks for every case and one nginx in front of them."""
        h = self.h
        _, (self.instant,) = h.start_mock("mock-instant")
        _, (self.slow,) = h.start_mock("mock-slow", "--latency-ms", str(SLOW_MS))
        _, (self.stream,) = h.start_mock(
            "mock-stream",
            "--chunk-interval-ms",
            str(STREAM_INTERVAL_MS),
            "--chunk-count",
            str(STREAM_DELTAS),
        )
        _, (self.throttled,) = h.start_mock(
            "mock-429", "--status-override", "429", "--retry-after-ms", "0"
        )
        self.nginx, ports = h.start_nginx(
            "nginx", {"instant": self.instant, "slow": self.slow, "stream": self.stream}
        )
        self.nginx_idle_rss_kib = self.nginx.rss_kib()
        self.nginx_urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        return {"nginx_idle_rss_kib": self.nginx_idle_rss_kib}

    def gateway(self, name: str, backends: list[Backend]) -> tuple[Proc, GatewaySetup]:
        setup = GatewaySetup(backends)
        proc = self.h.start_gateway(name, setup)
        wait_ready(setup.ready_url, proc)
        return proc, setup

    def targets(self, mock_url: str, gateway: GatewaySetup, nginx_label: str) -> dict:
        """The three ways to reach one mock: url and the key each one wants."""
        return {
            "direct": (mock_url + CHAT_PATH, BACKEND_KEY),
            "gateway": (gateway.url + CHAT_PATH, CLIENT_KEY),
            "nginx": (self.nginx_urls[nginx_label] + CHAT_PATH, "unused-by-nginx"),
        }

    def check(self, targets: dict, body: str) -> None:
        """Every target answers 200 before anything is measured."""
        for name, (url, key) in targets.items():
            status, _, text = post(url, key, body)
            if status != 200:
                raise HarnessError(f"{name} {url} answered {status}: {text[:300]!r}")

    def rotations(self, names: list[str]):
        """Repetition r runs the targets in an order rotated by r (drift hits all alike)."""
        for rep in range(self.plan.reps):
            k = rep % len(names)
            yield rep, names[k:] + names[:k]

    # ---- case 1: added latency at c=1 --------------------------------------------------------

    def case_latency(self) -> dict:
        gw, setup = self.gateway("gw-latency", [Backend("instant", self.instant)])
        targets = self.targets(self.instant, setup, "instant")
        self.check(targets, CHAT_BODY)
        runs = self.paired_runs(targets)
        gw.stop()
        return {"runs": runs, "summary": added(runs, "direct", ("gateway", "nginx"))}

    def paired_runs(self, targets: dict) -> dict:
        """`reps` paired runs (one request at a time, targets taking turns)."""
        runs = {name: [] for name in targets}
        for rep in range(self.plan.reps):
            result = self.h.paired(targets, CHAT_BODY, self.plan.paired_seconds)
            for name in targets:
                lat = result[name]["latency_us"]
                runs[name].append({**lat, "errors": result[name]["errors"]})
            self.log(
                f"  rep {rep + 1}: "
                + ", ".join(
                    f"{n} p50 {runs[n][-1]['p50']} µs p99 {runs[n][-1]['p99']} µs" for n in targets
                )
            )
        return runs

    def warm(self, targets: dict) -> None:
        if self.plan.warmup_seconds:
            for url, key in targets.values():
                self.h.wrk(url, key, CHAT_BODY, 8, self.plan.warmup_seconds)

    # ---- case 2: max throughput --------------------------------------------------------------

    def case_throughput(self) -> dict:
        p = self.plan
        gw, setup = self.gateway("gw-throughput", [Backend("instant", self.instant)])
        targets = self.targets(self.instant, setup, "instant")
        self.check(targets, CHAT_BODY)
        self.warm(targets)
        procs = {"gateway": gw, "nginx": self.nginx}

        runs = {name: [] for name in targets}
        for rep, order in self.rotations(list(targets)):
            for name in order:
                url, key = targets[name]
                cpu_before = procs[name].cpu_seconds() if name in procs else None
                result = self.h.wrk(url, key, CHAT_BODY, p.conns, p.wrk_seconds)
                if cpu_before is not None:
                    used = procs[name].cpu_seconds() - cpu_before
                    # Per answered request, as req/s counts them (an error answer is no request).
                    answered = result["requests"] - result["status"]
                    result["proxy_cpu_us_per_request"] = used * 1e6 / max(answered, 1)
                runs[name].append(result)
            self.log(
                f"  rep {rep + 1}: "
                + ", ".join(f"{n} {runs[n][-1]['rps']:.0f} req/s" for n in targets)
            )
        gw.stop()
        rps = {n: spread([r["rps"] for r in runs[n]]) for n in runs}
        self.throughput = {n: rps[n]["median"] for n in rps}
        cpu = {n: median([r.get("proxy_cpu_us_per_request") for r in runs[n]]) for n in procs}
        summary = {
            "rps": rps,
            "proxy_cpu_us_per_request": cpu,
            "gateway_vs_nginx": ratio(rps["gateway"]["median"], rps["nginx"]["median"]),
            "gateway_vs_direct": ratio(rps["gateway"]["median"], rps["direct"]["median"]),
            "nginx_vs_direct": ratio(rps["nginx"]["median"], rps["direct"]["median"]),
        }
        return {"connections": p.conns, "runs": runs, "summary": summary}

    # ---- case 3: throughput at a latency bound -----------------------------------------------

    def case_rate(self) -> dict:
        gw, setup = self.gateway("gw-rate", [Backend("slow", self.slow)])
        targets = self.targets(self.slow, setup, "slow")
        self.check(targets, CHAT_BODY)
        searches = {name: [] for name in targets}
        for rep, order in self.rotations(list(targets)):
            for name in order:
                url, key = targets[name]
                previous = [s["max_rate"] for s in searches[name] if s["max_rate"]]
                searches[name].append(
                    self.search_rate(url, key, previous, self.throughput.get(name))
                )
            self.log(
                f"  rep {rep + 1}: "
                + ", ".join(f"{n} {searches[n][-1]['max_rate'] or 0:.0f} req/s" for n in targets)
            )
        gw.stop()
        best = {n: spread([s["max_rate"] for s in searches[n]]) for n in searches}
        summary = {
            "max_rate": best,
            "gateway_vs_nginx": ratio(best["gateway"]["median"], best["nginx"]["median"]),
            "gateway_vs_direct": ratio(best["gateway"]["median"], best["direct"]["median"]),
        }
        return {"mock_latency_ms": SLOW_MS, "searches": searches, "summary": summary}

    def search_rate(self, url: str, key: str, previous: list[float], closed_loop) -> dict:
        """Highest rate that passes: geometric steps up to the first failure, then bisection.
        Later repetitions start just below the earlier result with finer steps."""
        p = self.plan
        probes = []

        def passes(rate: float) -> bool:
            r = self.h.rate(
                url,
                key,
                CHAT_BODY,
                "--rate",
                f"{rate:.0f}",
                "--duration",
                str(p.rate_seconds),
                "--warmup",
                str(p.rate_warmup),
            )
            ok = (
                r["latency_us"]["p99"] is not None
                and r["latency_us"]["p99"] < 1_000_000
                and r["error_ratio"] < 0.001
                and r["answered_in_window_rps"] >= 0.97 * rate
            )
            probes.append({"rate": rate, "pass": ok, "result": r})
            if not ok:
                # An overload leaves queues and half-answered connections behind, in the proxy
                # and in the mock all three targets share: the next probe starts from quiet.
                time.sleep(p.rate_settle)
            return ok

        if previous:
            start, factor = 0.9 * median(previous), 1.06
        elif closed_loop:
            start, factor = min(RATE_FIRST_FRACTION * closed_loop, p.rate_max), 1.25
        else:
            start, factor = p.rate_start, 1.6
        low, high, rate = None, None, start
        while rate <= p.rate_max:
            if passes(rate):
                low, rate = rate, rate * factor
            else:
                high = rate
                break
        if low is None and high is not None:  # failed at the start: step down instead
            while high > 100:
                rate = high / factor
                if passes(rate):
                    low = rate
                    break
                high = rate
        bisections = p.rate_bisections if not previous else min(p.rate_bisections, 1)
        for _ in range(bisections if low is not None and high is not None else 0):
            mid = (low + high) / 2
            if passes(mid):
                low = mid
            else:
                high = mid
        return {"max_rate": low, "capped": high is None, "probes": probes}

    # ---- case 4 + 6: streaming and memory -----------------------------------------------------

    def case_streaming(self) -> dict:
        p = self.plan
        gw, setup = self.gateway("gw-stream", [Backend("stream", self.stream)])
        idle_rss = gw.rss_kib()
        targets = self.targets(self.stream, setup, "stream")
        self.check(targets, STREAM_BODY)
        procs = {"gateway": gw, "nginx": self.nginx}

        # Case 6: memory at N concurrent streams (peak RSS sampled while they run), first, so the
        # peak is not inflated by what the allocators kept from the larger runs below.
        memory = {
            "gateway": {"idle_rss_kib": idle_rss},
            "nginx": {"idle_rss_kib": self.nginx_idle_rss_kib},
        }
        for name in ("gateway", "nginx"):
            url, key = targets[name]
            peak, r = self.sample_rss(
                procs[name],
                lambda n=name, u=url, k=key: self.h.streams(
                    {n: (u, k)},
                    p.memory_streams,
                    p.stream_ramp_ms,
                    STREAM_INTERVAL_MS,
                )[n],
            )
            memory[name].update(
                {
                    "streams": p.memory_streams,
                    "peak_rss_kib": peak,
                    "peak_concurrent": r["peak_concurrent"],
                    "failed": r["failed"],
                }
            )
        self.log(
            f"  memory: gateway idle {idle_rss} KiB, "
            f"{memory['gateway']['peak_rss_kib']} KiB at {p.memory_streams} streams"
        )

        # TTFT and inter-chunk delay at moderate concurrency, the three targets' streams dealt
        # out in turn so that they are measured in the same moments. First an unrecorded run, so
        # the proxies' upstream pools hold enough connections (a warm gateway has them).
        self.h.streams(targets, min(p.ttft_streams, 64) * len(targets), 100, STREAM_INTERVAL_MS)
        timing = {name: [] for name in targets}
        for rep in range(p.reps):
            cpu_before = {n: proc.cpu_seconds() for n, proc in procs.items()}
            result = self.h.streams(
                targets, p.ttft_streams * len(targets), p.ttft_ramp_ms, STREAM_INTERVAL_MS
            )
            for name, r in result.items():
                if name in procs:
                    used = procs[name].cpu_seconds() - cpu_before[name]
                    r["proxy_cpu_us_per_chunk"] = used * 1e6 / max(r["deltas"], 1)
                timing[name].append(r)
            self.log(
                f"  rep {rep + 1}: "
                + ", ".join(
                    f"{n} ttft p99 {timing[n][-1]['ttft_us']['p99']} µs gap p99 "
                    f"{timing[n][-1]['gap_us']['p99']} µs"
                    for n in targets
                )
            )

        # Concurrent streams sustained without a stall.
        sweep = {name: [] for name in targets}
        for rep in range(p.sweep_reps):
            for name, (url, key) in targets.items():
                levels = []
                for streams in p.stream_levels:
                    # A level holds when one of `level_tries` runs is clean: this VM pauses
                    # everything for ~20-30 ms every few seconds (direct streams too), which
                    # alone can make one stall; a proxy out of CPU stalls on every try.
                    tries = []
                    for _ in range(p.level_tries):
                        r = self.h.streams(
                            {name: (url, key)}, streams, p.stream_ramp_ms, STREAM_INTERVAL_MS
                        )[name]
                        clean = (
                            r["failed"] == 0
                            and r["stalls"] == 0
                            and r["peak_concurrent"] == streams
                        )
                        tries.append(r)
                        if clean:
                            break
                    levels.append({"streams": streams, "pass": clean, "tries": tries})
                    if not clean:
                        break
                passed = [lv["streams"] for lv in levels if lv["pass"]]
                sweep[name].append({"sustained": max(passed, default=0), "levels": levels})
            self.log(
                f"  sweep {rep + 1}: "
                + ", ".join(f"{n} {sweep[n][-1]['sustained']} streams" for n in targets)
            )

        gw.stop()

        def added_p99(field):
            return median(
                [
                    g[field]["p99"] - d[field]["p99"]
                    for g, d in zip(timing["gateway"], timing["direct"], strict=True)
                ]
            )

        def added_p99_nginx(field):
            return median(
                [
                    g[field]["p99"] - d[field]["p99"]
                    for g, d in zip(timing["nginx"], timing["direct"], strict=True)
                ]
            )

        summary = {
            "ttft_p99_us": {n: median([r["ttft_us"]["p99"] for r in timing[n]]) for n in timing},
            "gap_p99_us": {n: median([r["gap_us"]["p99"] for r in timing[n]]) for n in timing},
            "gap_max_us": {n: max(r["gap_us"]["max"] or 0 for r in timing[n]) for n in timing},
            "added_ttft_p99_us": {
                "gateway": added_p99("ttft_us"),
                "nginx": added_p99_nginx("ttft_us"),
            },
            "added_gap_p99_us": {
                "gateway": added_p99("gap_us"),
                "nginx": added_p99_nginx("gap_us"),
            },
            "stalls_in_timing_runs": {n: sum(r["stalls"] for r in timing[n]) for n in timing},
            "proxy_cpu_us_per_chunk": {
                n: median([r.get("proxy_cpu_us_per_chunk") for r in timing[n]]) for n in procs
            },
            "sustained_streams": {n: max(s["sustained"] for s in sweep[n]) for n in sweep},
        }
        return {
            "interval_ms": STREAM_INTERVAL_MS,
            "deltas_per_stream": STREAM_DELTAS,
            "stall": f"a gap between two deltas above {2 * STREAM_INTERVAL_MS} ms",
            "timing": timing,
            "sweep": sweep,
            "memory": memory,
            "summary": summary,
        }

    @staticmethod
    def sample_rss(proc: Proc, work) -> tuple[int, dict]:
        """Runs `work` while sampling the process tree's RSS every 10 ms; returns the peak."""
        peak = [proc.rss_kib()]
        done = threading.Event()

        def sample():
            while not done.wait(0.01):
                peak[0] = max(peak[0], proc.rss_kib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = work()
        finally:
            done.set()
            sampler.join()
        return peak[0], result

    # ---- case 5: failover cost ----------------------------------------------------------------

    def case_failover(self) -> dict:
        # The 429 backend says retry-after-ms: 0, so it never cools down: every request really
        # tries it first and fails over.
        fail, fail_setup = self.gateway(
            "gw-failover",
            [Backend("throttled", self.throttled, 10), Backend("instant", self.instant, 5)],
        )
        ok, ok_setup = self.gateway(
            "gw-first-ok",
            [Backend("instant", self.instant, 10), Backend("throttled", self.throttled, 5)],
        )
        targets = {
            "first_ok": (ok_setup.url + CHAT_PATH, CLIENT_KEY),
            "failover": (fail_setup.url + CHAT_PATH, CLIENT_KEY),
        }
        for name, expect in (("first_ok", "1"), ("failover", "2")):
            status, headers, _ = post(*targets[name], CHAT_BODY)
            if status != 200 or headers.get("x-gateway-attempts") != expect:
                raise HarnessError(
                    f"{name}: expected 200 after {expect} attempt(s), got {status} {headers}"
                )
        runs = self.paired_runs(targets)
        fail.stop()
        ok.stop()
        return {"runs": runs, "summary": added(runs, "first_ok", ("failover",))}

    # ---- guardrails: what the limits cost (bench/guardrails.py) -------------------------------

    def case_limits(self) -> dict:
        return guardrails.case_limits(self)

    # ---- case 7: start-up --------------------------------------------------------------------

    def case_startup(self) -> dict:
        p = self.plan
        most = max(p.startup_backends)
        _, urls = self.h.start_mock("mock-many", "--instances", str(most))
        results = {}
        for n in p.startup_backends:
            times = []
            for _ in range(p.startup_runs):
                setup = GatewaySetup(
                    [Backend(f"b{i}", urls[i], 10 if i % 2 == 0 else 5) for i in range(n)],
                    active_health=True,
                )
                proc = self.h.start_gateway(f"gw-startup-{n}", setup)
                times.append(wait_ready(setup.ready_url, proc) * 1000)
                proc.stop()
            results[str(n)] = {"ms": times, **spread(times)}
            self.log(f"  {n} backends: median {median(times):.1f} ms")
        how = (
            "hydrenv run: render the environment, write the release, exec the proxy"
            if self.h.launcher == "hydrenv run"
            else "proxy --config FILE"
        )
        return {
            "measured": f"process spawn (taskset + {how}) until /readyz answers 200; active "
            "health checks on; Key Vault not used",
            "launcher": self.h.launcher,
            "backends": results,
        }

    # ---- profile -----------------------------------------------------------------------------

    def profile(self) -> dict:
        """perf samples of the gateway under saturating load (request path) and under 512
        streams (relay path); the top symbols by self time."""
        p = self.plan
        if not p.profile_seconds:
            return {"skipped": "not in this plan"}
        if not shutil.which("perf"):
            return {"skipped": "perf is not installed"}
        out = {}
        gw, setup = self.gateway("gw-profile", [Backend("instant", self.instant)])
        url = setup.url + CHAT_PATH
        out["request"] = self.perf(
            gw, lambda: self.h.wrk(url, CLIENT_KEY, CHAT_BODY, p.conns, p.profile_seconds + 2)
        )
        gw.stop()
        gw, setup = self.gateway("gw-profile-stream", [Backend("stream", self.stream)])
        url = setup.url + CHAT_PATH
        out["stream"] = self.perf(
            gw, lambda: self.h.streams({"gateway": (url, CLIENT_KEY)}, 512, 200, STREAM_INTERVAL_MS)
        )
        gw.stop()
        return out

    def perf(self, proc: Proc, load) -> dict:
        data = self.h.work / f"perf-{proc.name}.data"
        cmd = [
            "perf",
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "-g",
            "--call-graph",
            "dwarf,16384",
            "-p",
            str(proc.pid),
            "-o",
            str(data),
            "--",
            "sleep",
            str(max(self.plan.profile_seconds, 1)),
        ]
        self.h.record(cmd)
        recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(0.2)
            load()
        except BaseException:
            recorder.kill()
            recorder.wait()
            raise
        _, err = recorder.communicate(timeout=120)
        if recorder.returncode != 0:
            return {"skipped": f"perf record failed: {err.decode(errors='replace')[-500:]}"}
        report = {}
        for view, flags in (("self", ["--no-children"]), ("children", ["--children"])):
            cmd = [
                "perf",
                "report",
                "-i",
                str(data),
                *flags,
                "--sort",
                "dso,sym",
                "--stdio",
                "--no-inline",
                "-g",
                "none",
                "--percent-limit",
                "0.2",
            ]
            self.h.record(cmd)
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
            lines = [ln.rstrip() for ln in text.splitlines() if ln and not ln.startswith("#")]
            report[view] = lines[:150]
        data.unlink(missing_ok=True)
        return report


def added(runs: dict, base: str, others: tuple[str, ...]) -> dict:
    """Median over repetitions of (other − base) for p50 and p99, plus the raw medians."""
    summary = {"p50_us": {}, "p99_us": {}, "max_us": {}}
    for name, results in runs.items():
        summary["p50_us"][name] = median([r["p50"] for r in results])
        summary["p99_us"][name] = median([r["p99"] for r in results])
        summary["max_us"][name] = max((r["max"] or 0) for r in results)
    for name in others:
        # A repetition where every exchange of a target failed has no percentiles: it is left
        # out here, and its errors (below) fail the verdict.
        pairs = [
            (o, b)
            for o, b in zip(runs[name], runs[base], strict=True)
            if o["p99"] is not None and b["p99"] is not None
        ]
        summary[f"{name}_added_p50_us"] = median([o["p50"] - b["p50"] for o, b in pairs])
        summary[f"{name}_added_p99_us"] = median([o["p99"] - b["p99"] for o, b in pairs])
    summary["errors"] = {n: sum(r["errors"] for r in rs) for n, rs in runs.items()}
    return summary


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


__all__ = ["Bench", "FULL", "SMOKE", "Plan", "LOAD_CPUS"]
