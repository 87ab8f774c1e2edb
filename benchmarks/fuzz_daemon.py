"""Fuzz benchmark: malformed, truncated, oversized and random requests against one `brushwork serve`
daemon subprocess (see tests/daemon_fuzz.py for the messages and the checks on every reply).

Prints how many messages were sent on how many connections, the replies by kind or error code,
and the daemon's resident memory (VmRSS) after a warm-up and at the end. Stops at the first
wrong reply (an AssertionError with hypothesis's shrunk example) or if the daemon dies.

    .venv/bin/python benchmarks/fuzz_daemon.py [--count 10000]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from daemon_fuzz import FUZZ_DAEMON_ARGS, Fuzzer, messages, rss_kib  # noqa: E402
from daemon_process import start_daemon, stop_daemon  # noqa: E402
from helpers import make_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages to send (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=1000, help="print the daemon's RSS every N messages")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        for name, kind, scale in (("mosaic", "style", 1), ("starry_night", "style", 1), ("sr_x2", "sr", 2),
                                  ("sr_x4", "sr", 4)):
            make_model(tmp / "models", name, kind, scale)
        endpoint = f"ipc://{tmp}/fuzz.sock"
        daemon = start_daemon(tmp, endpoint, tmp / "models", *FUZZ_DAEMON_ARGS)
        fuzzer = Fuzzer(endpoint)
        rss = {"start": rss_kib(daemon.pid)}
        warm_up = min(1000, args.count // 3)

        @seed(args.seed)
        @settings(max_examples=args.count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(message=messages)
        def send(message):
            fuzzer.send(message)
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon died with exit code {daemon.returncode}")
            if fuzzer.sent == warm_up:
                rss["warm"] = rss_kib(daemon.pid)
            if fuzzer.sent % args.every == 0:
                print(f"{fuzzer.sent:7d} messages: daemon VmRSS {rss_kib(daemon.pid) / 1024:.1f} MiB", flush=True)

        started = time.monotonic()
        try:
            send()
        finally:
            fuzzer.close()
            rss["end"] = rss_kib(daemon.pid)
            alive = daemon.poll() is None
            stop_daemon(daemon)
        elapsed = time.monotonic() - started
    print(f"sent {fuzzer.sent} messages on {fuzzer.connections} connections in {elapsed:.1f} s; "
          f"daemon alive at the end: {alive}")
    print("replies: " + ", ".join(f"{key} {count}" for key, count in fuzzer.replies.most_common()))
    print(f"daemon VmRSS: {rss['start'] / 1024:.1f} MiB at start, {rss.get('warm', 0) / 1024:.1f} MiB after "
          f"{warm_up} messages, {rss['end'] / 1024:.1f} MiB at the end")


if __name__ == "__main__":
    main()
