"""Model-folder fuzz benchmark: hostile files dropped into a folder one `brushwork serve` daemon
watches while clients ping it, ask for `info` and stylize and upscale with bundled models (see
tests/model_folder_fuzz.py for the files and the checks).

Prints the files written by kind, the requests served, ping round trips (median, 99th percentile,
maximum; the goal is under 1 s throughout) and the daemon's resident memory after a tenth of the
files and at the end. Stops at the first failed request or if the daemon dies.

    nice -n 10 .venv/bin/python benchmarks/fuzz_model_folder.py [--count 2000] [--seed 0]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from daemon_fuzz import rss_kib  # noqa: E402
from daemon_process import daemon_output, start_daemon, stop_daemon  # noqa: E402
from helpers import make_model  # noqa: E402
from model_folder_fuzz import FolderFuzzer, Traffic, ping_percentiles  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="files to drop (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=500, help="print progress every N files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        watched = tmp / "watched"
        watched.mkdir()
        template = make_model(tmp / "template", "template", architecture={"channels": 4, "blocks": 1})
        endpoint = f"ipc://{tmp}/folder.sock"
        daemon = start_daemon(tmp, endpoint, watched)
        fuzzer = FolderFuzzer(watched, template, seed=args.seed)
        rss = {"start": rss_kib(daemon.pid)}
        started = time.monotonic()
        try:
            with Traffic(endpoint, style="wave", sr="sr_x2_pixel") as traffic:
                while fuzzer.written < args.count and not traffic.failures and daemon.poll() is None:
                    fuzzer.drop()
                    if fuzzer.written == args.count // 10:
                        rss["warm"] = rss_kib(daemon.pid)
                    if fuzzer.written % args.every == 0:
                        print(f"{fuzzer.written:6d} files: daemon VmRSS {rss_kib(daemon.pid) / 1024:.1f} MiB, "
                              f"{len(traffic.ping_seconds)} pings, slowest {max(traffic.ping_seconds) * 1000:.0f} ms",
                              flush=True)
                    time.sleep(0.005)
                time.sleep(1.0)
            rss["end"] = rss_kib(daemon.pid)
        finally:
            output = daemon_output(daemon)
            tracebacks = output.count("Traceback")
            status = stop_daemon(daemon)
            if tracebacks or traffic.failures or status:
                print(f"the daemon's log ends:\n{output[-6000:]}")
        seconds = time.monotonic() - started
        median, p99, worst = ping_percentiles(traffic.ping_seconds)
        print(f"{fuzzer.written} files in {seconds:.0f} s: {dict(sorted(fuzzer.kinds.items()))}")
        print(f"requests served: {dict(traffic.requests)}; failures: {traffic.failures or 'none'}")
        print(f"{len(traffic.ping_seconds)} pings: median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
              f"max {worst * 1000:.1f} ms ({'under' if worst < 1 else 'OVER'} 1 s)")
        print(f"daemon VmRSS: {rss['start'] / 1024:.1f} MiB at start, {rss['warm'] / 1024:.1f} after "
              f"{args.count // 10} files, {rss['end'] / 1024:.1f} at the end; exit status {status}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"tracebacks in the daemon's log: {tracebacks}")
        return 1 if traffic.failures or status != 0 or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
