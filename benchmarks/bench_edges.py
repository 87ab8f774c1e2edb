"""Lines along the image edge in the style nets' output, and what running them mirrored costs.

For each bundled style model, the engine's two ways of running it:
- ``plain``: the net on the image (the model's metadata says ``"mirror_edges": false``);
- ``mirrored``: the engine's default, the image mirrored out past the net's reach
  (``backend.nets.edge_hiding_border``: 84 px for 8 blocks), every instance norm with the
  statistics of the image alone, the output cropped back.
It prints the worst side's edge ratio (``trainer.metrics.edge_ratio``: the step from the
outermost row or column to the next, over the mean of the 8 steps after it; about 1 when the
edge looks like what lies inside it) on each of the three shared content photos (384 px), and
the mean objective (Eq. 5) on held-out photos at ``--size`` px, of the whole image and of its
interior (``--inside`` px in from every side, where the edge cannot reach), mirrored against plain.
``--times`` adds the engine's CPU time per image, plain and mirrored, at 1024**2 and 4096**2.
``--lbfgs N`` adds, per held-out photo, the edge ratio of the plain net's output and of the
Gatys baseline after N L-BFGS iterations from noise (does the objective itself want lines?).

    .venv/bin/python benchmarks/bench_edges.py [--models NAME ...] [--held 4] [--size 512] [--times] [--lbfgs 100]

Shared data: $BRUSHWORK_SHARED or ../shared beside the checkout.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.engine import Engine  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402
from trainer.data import find_images, split_holdout  # noqa: E402
from trainer.eval_style import square_content  # noqa: E402
from trainer.gatys import model_objective  # noqa: E402
from trainer.gatys import optimize  # noqa: E402
from trainer.metrics import edge_ratio  # noqa: E402

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or ROOT.parent / "shared") / "data"
HOLDOUT = ROOT / "trainer" / "recipes" / "sun_hays80_holdout.txt"
PHOTOS = ("amber", "chicago", "hoovertowernight")


def plain_copy(info, directory):
    """Copy style model ``info`` into ``directory`` as ``<name>_plain`` with ``"mirror_edges": false``."""
    name = f"{info.name}_plain"
    meta = dict(info.metadata, name=name, weights=f"{name}.safetensors", mirror_edges=False)
    shutil.copy(info.weights_path, Path(directory) / meta["weights"])
    (Path(directory) / f"{name}.json").write_text(json.dumps(meta))
    return name


def content_photos(size=384):
    photos = []
    for name in PHOTOS:
        image = Image.open(SHARED / "content" / f"{name}.jpg").convert("RGB")
        image.thumbnail((size, size))
        photos.append(np.asarray(image, np.float32) / 255)
    return photos


def stylize(engine, model, content):
    """``engine``'s stylisation of the 1x3xHxW tensor ``content``, as a tensor."""
    rgb = content[0].permute(1, 2, 0).numpy()
    return torch.from_numpy(engine.stylize(rgb, None, model)[0]).permute(2, 0, 1)[None]


def cpu_seconds(engine, model, image):
    """This process's CPU seconds for one stylisation: steadier than wall time on a busy machine."""
    start = time.process_time()
    engine.stylize(image, None, model)
    return time.process_time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", metavar="NAME", help="only these style models (default: every bundled one)")
    parser.add_argument("--held", type=int, default=4, help="held-out photos for the objective (default 4)")
    parser.add_argument("--size", type=int, default=512, help="their square size (default 512)")
    parser.add_argument("--inside", type=int, default=84, help="interior: pixels in from each side (default 84)")
    parser.add_argument("--times", action="store_true", help="also time plain and mirrored runs at 1024 and 4096 px")
    parser.add_argument("--time-model", default="udnie", help="the model timed (default udnie, 8 blocks)")
    parser.add_argument("--lbfgs", type=int, default=0, metavar="N",
                        help="also compare edge ratios with L-BFGS after N iterations on the held-out photos")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    plain_dir = tempfile.mkdtemp(prefix="bench-edges-")
    try:
        bundled = ModelStore(include_user=False)
        styles = [info for info in bundled.list()
                  if info.kind == "style" and (args.models is None or info.name in args.models)]
        timed = [info for info in bundled.list() if info.name == args.time_model] if args.times else []
        plain = {info.name: plain_copy(info, plain_dir) for info in styles + timed}
        engine = Engine(ModelStore(plain_dir, include_user=False), device="cpu", precision="fp32")
        photos = content_photos()
        _, held = split_holdout(find_images(SHARED / "train" / "sun_hays80"), holdout_list=HOLDOUT)
        held = [square_content(path, args.size) for path in held[:args.held]]
        inner = (..., slice(args.inside, -args.inside), slice(args.inside, -args.inside))
        print(f"edge ratio: worst side on {', '.join(PHOTOS)} (384 px); objective: mean over {len(held)} "
              f"held-out photos at {args.size} px, whole and {args.inside} px in from every side; "
              f"engine {engine.device} {engine.precision}")
        print(f"{'model':16s} {'edge ratio plain':>20s} {'edge ratio mirrored':>20s} "
              f"{'objective whole: plain / mirrored':>36s} {'interior: plain / mirrored':>36s}")
        for info in styles:
            ratios = {way: [edge_ratio(engine.stylize(photo, None, model)[0]) for photo in photos]
                      for way, model in (("plain", plain[info.name]), ("mirrored", info.name))}
            style = SHARED / "styles" / Path(info.metadata["data"]["style_image"]).name
            objective, _ = model_objective(info.metadata, "cpu", style)
            whole, interior = {}, {}
            for way, model in (("plain", plain[info.name]), ("mirrored", info.name)):
                outputs = [stylize(engine, model, content) for content in held]
                whole[way] = np.mean([float(objective(out, c)[0]) for out, c in zip(outputs, held)])
                interior[way] = np.mean([float(objective(out[inner], c[inner])[0]) for out, c in zip(outputs, held)])
            cells = [" ".join(f"{r:.2f}" for r in ratios["plain"]), " ".join(f"{r:.2f}" for r in ratios["mirrored"]),
                     f"{whole['plain']:.4g} / {whole['mirrored']:.4g} ({whole['mirrored'] / whole['plain'] - 1:+.1%})",
                     f"{interior['plain']:.4g} / {interior['mirrored']:.4g} "
                     f"({interior['mirrored'] / interior['plain'] - 1:+.1%})"]
            print(f"{info.name:16s} {cells[0]:>20s} {cells[1]:>20s} {cells[2]:>36s} {cells[3]:>36s}", flush=True)
            if args.lbfgs:
                net = bundled.load(info)
                nets = " ".join(f"{edge_ratio(net(c).clamp(0, 1)[0].permute(1, 2, 0).numpy()):.2f}" for c in held)
                with torch.enable_grad():
                    optimised = [optimize(c, objective, args.lbfgs)[0] for c in held]
                lbfgs = " ".join(f"{edge_ratio(image[0].permute(1, 2, 0).numpy()):.2f}" for image in optimised)
                print(f"{'':16s} edge ratio on each held-out photo: net {nets}; L-BFGS {args.lbfgs}: {lbfgs}")
        if args.times:
            model = args.time_model
            for size in (1024, 4096):
                image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
                cpu_seconds(engine, model, image[:256, :256])   # warm-up
                times = {way: min(cpu_seconds(engine, name, image) for _ in range(2 if size <= 1024 else 1))
                         for way, name in (("plain", plain[model]), ("mirrored", model))}
                print(f"CPU time {model} {size}x{size} (tile {engine.tile_size}): plain {times['plain']:.1f} s, "
                      f"mirrored {times['mirrored']:.1f} s ({times['mirrored'] / times['plain'] - 1:+.0%})", flush=True)
    finally:
        shutil.rmtree(plain_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
