#!/usr/bin/env python3
"""The training run of the profile-guided release build (scripts/build-release.sh):

    python3 bench/pgo_train.py --proxy PROXY [--bin-dir target/release] [--smoke]

Starts mocks (instant, streaming, always-429) and PROXY in front of them on loopback, and sends
the traffic the gateway is built for, so the profile says which paths are hot: chat completions on
the legacy and the v1 routes, Responses, embeddings, SSE streams with usage accounting, and a
failover from a throttled backend to a healthy one. Then it stops PROXY with SIGTERM, so an
instrumented build writes its profile (`LLVM_PROFILE_FILE`) on the way out.

Every request must succeed: a profile of error paths would teach the compiler the wrong thing,
so any failed request fails the run (and the build). Loads come from `loadgen` only (no wrk), so
a container build stage can run it too. Rates stay well below what one core proxies, so a slower
machine trains the same paths. `--smoke` shortens and slows every phase (CI runs it on the debug
binaries so the training cannot rot).
"""

from __future__ import annotations

import argparse
import json
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
    HarnessError,
    Proc,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent
V1_CHAT = "/openai/v1/chat/completions"
V1_CHAT_BODY = json.dumps(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}, separators=(",", ":")
)
RESPONSES = "/openai/v1/responses"
RESPONSES_BODY = json.dumps({"model": "gpt-4o", "input": "hello"}, separators=(",", ":"))
EMBEDDINGS = "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
EMBEDDINGS_BODY = json.dumps({"input": "hello"}, separators=(",", ":"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--proxy", type=Path, required=True, help="the proxy binary to train")
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=ROOT / "target" / "release",
        help="where mock and loadgen are (default: target/release)",
    )
    parser.add_argument("--smoke", action="store_true", help="every phase briefly")
    args = parser.parse_args()
    scale = 0.1 if args.smoke else 1.0
    h = Harness.for_script("pgo-train", args.bin_dir)
    try:
        train(h, args.proxy.resolve(), scale)
    except HarnessError as e:
        print(f"pgo_train: {e}", file=sys.stderr)
        return 1
    finally:
        h.stop_all()
    print(f"pgo_train: every request succeeded (work files in {h.work})")
    return 0


def train(h: Harness, proxy: Path, scale: float) -> None:
    _, (instant,) = h.start_mock("mock-instant")
    _, (stream,) = h.start_mock("mock-stream", "--chunk-interval-ms", "5", "--chunk-count", "32")
    _, (throttled,) = h.start_mock(
        "mock-429", "--status-override", "429", "--retry-after-ms", "0"
    )
    duration = f"{max(3 * scale, 0.3):.2f}"

    def rate(url: str, body: str, rps: int, what: str) -> None:
        rps = max(int(rps * scale), 100)
        r = h.rate(url, CLIENT_KEY, body, "--rate", str(rps), "--duration", duration)
        if r["errors"] or not r["ok"]:
            raise HarnessError(f"{what}: {r['errors']} of {r['sent']} requests failed: {r}")
        print(f"  {what}: {r['ok']} answers at {r['achieved_rps']:.0f}/s", flush=True)

    with gateway(h, proxy, "train-instant", [Backend("mock", instant)]) as url:
        rate(url + CHAT_PATH, CHAT_BODY, 8000, "chat completions (legacy route)")
        rate(url + V1_CHAT, V1_CHAT_BODY, 3000, "chat completions (v1 route)")
        rate(url + RESPONSES, RESPONSES_BODY, 2000, "responses")
        rate(url + EMBEDDINGS, EMBEDDINGS_BODY, 2000, "embeddings")
        paired = h.paired({"gateway": (url + CHAT_PATH, CLIENT_KEY)}, CHAT_BODY, float(duration))
        if paired["gateway"]["errors"]:
            raise HarnessError(f"one request at a time: {paired}")
        print("  one request at a time: done", flush=True)
    with gateway(h, proxy, "train-stream", [Backend("mock", stream)]) as url:
        count = max(int(400 * scale), 20)
        streams = h.streams({"gateway": (url + CHAT_PATH, CLIENT_KEY)}, count, 200, 5)["gateway"]
        if streams["failed"]:
            raise HarnessError(f"streams: {streams['failed']} of {count} failed: {streams}")
        print(f"  streams: {streams['completed']} streams, {streams['deltas']} deltas", flush=True)
    failover = [Backend("throttled", throttled, 1), Backend("healthy", instant, 2)]
    with gateway(h, proxy, "train-failover", failover) as url:
        rate(url + CHAT_PATH, CHAT_BODY, 2000, "failover (429, then the next tier)")


class gateway:  # noqa: N801 (used as a context manager, like open())
    """PROXY on its own config in front of `backends`; stopped with SIGTERM on exit, so an
    instrumented build writes its profile."""

    def __init__(self, h: Harness, proxy: Path, name: str, backends: list[Backend]):
        self.h, self.proxy, self.name, self.setup = h, proxy, name, GatewaySetup(backends)

    def __enter__(self) -> str:
        config = self.h.gateway_config(self.name, self.setup)
        self.proc = Proc(self.h, self.name, [str(self.proxy), "--config", str(config)], SERVER_CPUS)
        wait_ready(self.setup.ready_url, self.proc)
        return self.setup.url

    def __exit__(self, *exc) -> None:
        self.proc.stop()
        if exc[0] is None and self.proc.popen.returncode != 0:
            raise HarnessError(
                f"{self.name} exited with {self.proc.popen.returncode} on SIGTERM "
                f"(its profile may be missing):\n{self.proc.output()[-2000:]}"
            )


if __name__ == "__main__":
    sys.exit(main())
