#!/usr/bin/env python3
"""Where a proxied request's CPU goes, gateway against nginx, in front of the same mock:

    python3 bench/cpusplit.py [--proxy target/dist/proxy] [--reps 4] [--seconds 4]

For each concurrency (wrk -c64, the saturation of case 2, and wrk -c1, one request at a time as
in case 1) the two proxies take turns, `--reps` runs each, and every run prints req/s and, per
answered request, the proxy's CPU time (nanosecond thread run time), its user-mode part (clock
ticks, coarser), the kernel part (the difference) and its context switches (voluntary: it waited;
involuntary: the mock, on the same core, preempted it). Processes are pinned as in the benchmark
(mock and proxies on core 0, wrk on core 1). Needs target/release/{mock,loadgen} and wrk
(bench/run.sh builds and installs them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    CHAT_BODY,
    CHAT_PATH,
    CLIENT_KEY,
    SERVER_CPUS,
    Backend,
    GatewaySetup,
    Harness,
    Proc,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--proxy", type=Path, default=ROOT / "target" / "dist" / "proxy")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    h = Harness.for_script("cpusplit")
    try:
        _, (instant,) = h.start_mock("mock-instant")
        setup = GatewaySetup([Backend("mock", instant)])
        config = h.gateway_config("gateway", setup)
        gateway = Proc(
            h, "gateway", [str(args.proxy.resolve()), "--config", str(config)], SERVER_CPUS
        )
        wait_ready(setup.ready_url, gateway)
        nginx, ports = h.start_nginx("nginx", {"instant": instant})
        targets = {
            "gateway": (setup.url + CHAT_PATH, gateway),
            "nginx": (f"http://127.0.0.1:{ports['instant']}" + CHAT_PATH, nginx),
        }
        for url, _ in targets.values():
            h.wrk(url, CLIENT_KEY, CHAT_BODY, 8, 1)
        for conns in (64, 1):
            print(f"wrk -c{conns}, {args.seconds} s per run; per answered request:")
            for rep in range(args.reps):
                order = list(targets) if rep % 2 == 0 else list(reversed(targets))
                for name in order:
                    url, proc = targets[name]
                    cpu, user, cs = proc.cpu_seconds(), proc.user_seconds(), proc.context_switches()
                    r = h.wrk(url, CLIENT_KEY, CHAT_BODY, conns, args.seconds)
                    n = max(r["requests"] - r["status"], 1)
                    cpu = (proc.cpu_seconds() - cpu) * 1e6 / n
                    user = (proc.user_seconds() - user) * 1e6 / n
                    after = proc.context_switches()
                    print(
                        f"  {name:8s} {r['rps']:8.0f} req/s  CPU {cpu:6.2f} µs  user {user:5.2f} µs"
                        f"  kernel {cpu - user:6.2f} µs  switches {(after[0] - cs[0]) / n:.3f}"
                        f" waited, {(after[1] - cs[1]) / n:.3f} preempted",
                        flush=True,
                    )
    finally:
        h.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
