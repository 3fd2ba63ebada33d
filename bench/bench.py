#!/usr/bin/env python3
"""Gateway benchmark driver (shared/spec/performance.md). Run it through `bench/run.sh`, which
installs the tools and builds the binaries first.

    bench/run.sh                  full run (~12 min): results in bench/results/
    bench/run.sh --smoke          every case once with tiny durations (CI), no thresholds

Starts the mock backends, the gateway and nginx on 127.0.0.1, runs the seven cases and the
guardrails' (limits) with wrk, loadgen (bench/src) and redis-benchmark, and writes a JSON file
and a Markdown report. Exit code 0 unless the harness itself broke: numbers never fail a run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import FULL, SMOKE, Bench  # noqa: E402
from harness import LOAD_CPUS, SERVER_CPUS, ForeignLoad, Harness, HarnessError, machine  # noqa: E402
from report import markdown, verdicts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    "latency",
    "throughput",
    "rate",
    "streaming",
    "failover",
    "limits",
    "startup",
    "profile",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny durations, one repetition")
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=ROOT / "target" / "dist",
        help="where hydrenv, proxy, mock and loadgen are (default target/dist, what "
        "scripts/build-release.sh builds)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default bench/results, or target/bench-smoke for --smoke)",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)}"
    )
    parser.add_argument("--reps", type=int, help="override the number of repetitions")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args()

    plan = SMOKE if args.smoke else FULL
    if args.reps:
        plan = type(plan)(**{**asdict(plan), "reps": args.reps})
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(wanted) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    out_dir = args.out or (
        ROOT / "target" / "bench-smoke" if args.smoke else ROOT / "bench" / "results"
    )
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y-%m-%dT%H%MZ")
    work = ROOT / "target" / "bench-work" / f"{stamp}-{plan.name}"
    work.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Raise the open-files limit for the many connections of the streaming case (inherited).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    h = Harness(args.bin_dir.resolve(), work, pin=not args.no_pin)
    if h.pin:
        os.sched_setaffinity(0, {int(LOAD_CPUS)})  # the driver stays off the servers' core
    layout = (
        f"mock, gateway and nginx on core {SERVER_CPUS}; wrk, loadgen and this driver on "
        f"core {LOAD_CPUS} (taskset); the gateway and nginx therefore run one worker each"
        if h.pin
        else "not pinned"
    )

    def log(text: str) -> None:
        print(text, flush=True)

    def stop(signum, _frame):
        h.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    foreign = ForeignLoad()
    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    result: dict = {
        "started": stamp,
        "plan": asdict(plan),
        "machine": machine(),
        "layout": layout,
        "launcher": h.launcher,
        "bin_dir": str(
            h.bin_dir.relative_to(ROOT) if h.bin_dir.is_relative_to(ROOT) else h.bin_dir
        ),
        # scripts/build-release.sh says there how it built the proxy (PGO or not).
        "build": (h.bin_dir / "BUILD").read_text().strip()
        if (h.bin_dir / "BUILD").exists()
        else f"cargo build ({h.bin_dir.name} profile)",
        "work": str(work),
        "root": str(ROOT),
        "cases": {},
    }
    clock = time.monotonic()
    broken = None
    try:
        bench = Bench(h, plan, log)
        result["backends"] = bench.start_backends()
        for name in wanted:
            log(f"[{name}]")
            case_clock, case_foreign = time.monotonic(), foreign.total
            method = getattr(bench, "profile" if name == "profile" else f"case_{name}")
            value = method()
            value["elapsed_s"] = round(time.monotonic() - case_clock, 1)
            value["foreign_cpu_s"] = round(foreign.total - case_foreign, 1)
            if name == "profile":
                result["profile"] = value
            else:
                result["cases"][name] = value
    except HarnessError as error:
        broken = str(error)
    except Exception:  # the harness broke: say where
        broken = traceback.format_exc()
    finally:
        h.stop_all()
        foreign.stop()

    elapsed = time.monotonic() - clock
    result["elapsed_s"] = round(elapsed, 1)
    result["noise"] = {
        "foreign_cpu_s": round(foreign.total, 1),
        "foreign_cores": round(foreign.total / elapsed, 2) if elapsed else None,
        "busiest": foreign.top(),
        "kernel_cpu_s": round(foreign.kernel, 1),
        "loadavg_start": loadavg_start,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
    }
    result["commands"] = h.commands
    if broken:
        result["broken"] = broken
    json_path = out_dir / f"{stamp}-{plan.name}.json"
    # The raw figures are written before the verdicts, so a bug there cannot lose a run.
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    result["verdicts"] = verdicts(result)
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    report = markdown(result)
    md_path = out_dir / (
        "latest.md" if plan.name == "full" and wanted == list(CASES) else f"{stamp}-{plan.name}.md"
    )
    md_path.write_text(report)
    if plan.name == "full" and wanted == list(CASES):
        (out_dir / "latest.json").write_text(json.dumps(result, indent=1) + "\n")

    log("")
    if not args.smoke:  # smoke numbers mean nothing: no verdicts
        for v in result["verdicts"]:
            log(
                f"  case {v['case']}: {v['what']}: {v['value']} (target {v['target']}) "
                f"{'holds' if v['holds'] else 'MISSED ' + v['miss']}"
            )
    log(
        f"results: {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}, "
        f"{md_path.relative_to(ROOT) if md_path.is_relative_to(ROOT) else md_path}"
    )
    if broken:
        log(f"BENCH {plan.name.upper()} BROKEN: {broken}")
        return 1
    log(
        f"BENCH {plan.name.upper()} OK: {len(wanted)} cases in {elapsed:.0f} s"
        + (" (smoke: numbers are meaningless)" if args.smoke else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
