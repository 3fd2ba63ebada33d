#!/usr/bin/env python3
"""A/B of two gateway binaries, side by side in one run (how proxy changes are measured):

    scripts/build-release.sh && cp target/dist/proxy /tmp/proxy-before
    ... change the proxy, build again ...
    python3 bench/compare.py /tmp/proxy-before target/dist/proxy [--reps 5]

Both gateways run at the same time in front of the same mocks (core 0; load on core 1), so
noise from a shared machine hits both alike:
- latency at c=1: `loadgen paired` taking turns between direct, A and B; added p50/p99;
- throughput: `wrk -c64`, A and B alternating; req/s and the gateway's CPU time per request
  (nanosecond thread run time, steadier than req/s), and its user-mode part alone (what a change
  to the gateway's own code moves; the kernel's share varies more between runs);
- streams: 512 streams (64 deltas, 20 ms apart) dealt out between A and B; CPU per relayed chunk,
  gap p99 and TTFT p99.
Needs target/release/{mock,loadgen} (bench/run.sh builds them) and wrk.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BACKEND_KEY,
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("a", type=Path, help="proxy binary A (e.g. before a change)")
    parser.add_argument("b", type=Path, help="proxy binary B (e.g. after it)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    h = Harness.for_script("compare")
    try:
        _, (instant,) = h.start_mock("mock-instant")
        _, (stream,) = h.start_mock(
            "mock-stream", "--chunk-interval-ms", "20", "--chunk-count", "64"
        )
        gateways = {}
        for label, binary in (("A", args.a), ("B", args.b)):
            for kind, url in (("chat", instant), ("stream", stream)):
                setup = GatewaySetup([Backend("mock", url)])
                config = h.gateway_config(f"{label}-{kind}", setup)
                argv = [str(binary.resolve()), "--config", str(config)]
                proc = Proc(h, f"{label}-{kind}", argv, SERVER_CPUS)
                wait_ready(setup.ready_url, proc)
                gateways[label, kind] = (proc, setup)
        chat = {label: gateways[label, "chat"] for label in ("A", "B")}
        targets = {"direct": (instant + CHAT_PATH, BACKEND_KEY)}
        targets.update({label: (s.url + CHAT_PATH, CLIENT_KEY) for label, (_, s) in chat.items()})

        latency = {name: [] for name in targets}
        for _ in range(args.reps):
            result = h.paired(targets, CHAT_BODY, 6)
            for name in targets:
                latency[name].append(result[name]["latency_us"])
        for label in ("A", "B"):
            pairs = list(zip(latency[label], latency["direct"], strict=True))
            p50 = statistics.median(x["p50"] - d["p50"] for x, d in pairs)
            p99 = statistics.median(x["p99"] - d["p99"] for x, d in pairs)
            print(f"latency c=1   {label}: added p50 {p50} µs, added p99 {p99} µs")

        throughput = {"A": [], "B": []}
        for rep in range(args.reps):
            for label in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                proc, setup = chat[label]
                cpu, user = proc.cpu_seconds(), proc.user_seconds()
                r = h.wrk(setup.url + CHAT_PATH, CLIENT_KEY, CHAT_BODY, 64, 5)
                answered = max(r["requests"] - r["status"], 1)
                used = (proc.cpu_seconds() - cpu) * 1e6 / answered
                user = (proc.user_seconds() - user) * 1e6 / answered
                throughput[label].append((r["rps"], used, user))
        for label, runs in throughput.items():
            print(
                f"throughput    {label}: {statistics.median(r[0] for r in runs):.0f} req/s "
                f"{[round(r[0]) for r in runs]}, CPU/request "
                f"{statistics.median(r[1] for r in runs):.2f} µs {[round(r[1], 2) for r in runs]}, "
                f"user CPU/request {statistics.median(r[2] for r in runs):.2f} µs "
                f"{[round(r[2], 2) for r in runs]}"
            )

        streams = {"A": [], "B": []}
        stream_targets = {
            label: (gateways[label, "stream"][1].url + CHAT_PATH, CLIENT_KEY) for label in streams
        }
        for _ in range(args.reps):
            cpu = {label: gateways[label, "stream"][0].cpu_seconds() for label in streams}
            result = h.streams(stream_targets, 512, 800, 20)
            for label in streams:
                used = gateways[label, "stream"][0].cpu_seconds() - cpu[label]
                r = result[label]
                streams[label].append(
                    (used * 1e6 / r["deltas"], r["gap_us"]["p99"], r["ttft_us"]["p99"], r["stalls"])
                )
        for label, runs in streams.items():
            print(
                f"streams       {label}: CPU/chunk {statistics.median(r[0] for r in runs):.2f} µs "
                f"{[round(r[0], 2) for r in runs]}, gap p99 {[r[1] for r in runs]} µs, "
                f"TTFT p99 {[r[2] for r in runs]} µs, stalls {[r[3] for r in runs]}"
            )
    finally:
        h.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
