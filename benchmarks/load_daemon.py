"""Load benchmark: concurrent clients against one `brushwork serve` daemon (CPU, fp32).

Each client keeps ``--window`` requests in flight (echo and stylize at strength 0, each with its
own payload; see tests/daemon_load.py) and re-sends a request refused as ``busy``. Prints the
replies that were lost, duplicated or mismatched (all should be 0), how often the queue said
busy, and p50/p99 latencies per kind. No assertions; figures only.

    .venv/bin/python benchmarks/load_daemon.py [--clients 4] [--requests 250] [--window 4] [--queue 2]
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from daemon_load import run_load, summary  # noqa: E402
from daemon_process import start_daemon, stop_daemon  # noqa: E402
from helpers import make_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=250, help="per client")
    parser.add_argument("--window", type=int, default=4, help="requests in flight per client")
    parser.add_argument("--queue", type=int, default=2, help="the daemon's --queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        make_model(tmp / "models", "mosaic")
        endpoint = f"ipc://{tmp}/load.sock"
        daemon = start_daemon(tmp, endpoint, tmp / "models", "--queue", str(args.queue))
        try:
            loads, wall = run_load(endpoint, args.clients, args.requests, args.window)
        finally:
            stop_daemon(daemon)
    totals = summary(loads, wall)
    print(f"{args.clients} clients x {args.requests} requests, {args.window} in flight each, daemon queue "
          f"{args.queue}: {totals['done']} answered in {wall:.2f} s ({totals['done'] / wall:.0f}/s)")
    print(f"lost {totals['lost']}, duplicated {totals['duplicated']}, mismatched {totals['mismatched']}, "
          f"other errors {len(totals['errors'])}; busy replies (re-sent) {totals['busy']}")
    for kind in ("echo", "stylize"):
        if f"{kind}_p50_ms" in totals:
            print(f"{kind:8s} latency p50 {totals[f'{kind}_p50_ms']:.2f} ms, p99 {totals[f'{kind}_p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
