"""Crosshatch on flat areas: the texture each SR model invents where the original is flat.

For every SR model (bundled, or --models DIR) on the three shared content photos (long side
scaled to 1024 px; amber's flat orange and cream areas show it best) and on Set14: the photo is
downsampled by the model's scale (Pillow bicubic, as `eval sr`), upscaled by the model through
the engine (fp32), and compared with the original on

- ``flat``: pixels whose 9x9 neighbourhood is flat in the original (luma std < 3 grey levels);
  ``invented`` there is the fine texture (above a Gaussian of sigma 1) the model adds to a
  bicubic upscale that is not the original's own (`trainer.metrics.invented_texture`, RMS in
  grey levels; bicubic and the original score 0); ``coarse`` the same above a Gaussian of sigma 5,
  which also counts patterns up to about 30 pixels across, such as faint bands;
- ``edges``: pixels with a luma std of at least 20 in their 9x9 window; ``crisp`` there is the
  upscale's fine detail over the original's (`trainer.metrics.detail_ratio`; 1 = as crisp).

    nice -n 10 .venv/bin/python benchmarks/bench_sr_flat.py [--models DIR] [--only NAME ...]

(shared data: $BRUSHWORK_SHARED, else ../shared beside the checkout)
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.engine import Engine  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402
from trainer import metrics  # noqa: E402
from trainer.eval_sr import crop_to_multiple, degrade  # noqa: E402
from trainer.evaluate import image_paths  # noqa: E402

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or ROOT.parent / "shared") / "data"
PHOTO_SIDE = 1024
EDGE_SPREAD = 20.0
COARSE_SIGMA = 5.0


def photo(path):
    """A content photo with its long side scaled to PHOTO_SIDE (a multiple of every scale)."""
    image = Image.open(path).convert("RGB")
    factor = PHOTO_SIDE / max(image.size)
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS)


def measure(upscale, hr, scale):
    """(invented, coarse on flat, crisp on edges, share of flat pixels) for ``upscale`` (None: bicubic)."""
    hr = crop_to_multiple(hr, scale)
    lr = degrade(hr, scale)
    bicubic = np.asarray(lr.resize(hr.size, Image.BICUBIC), np.float64)
    out = bicubic if upscale is None else np.clip(upscale(np.asarray(lr, np.float32) / 255), 0, 1) * 255
    original = np.asarray(hr, np.float64)
    flat = metrics.flat_mask(original)
    edges = metrics.luma_spread(original) >= EDGE_SPREAD
    for mask in (flat, edges):   # leave out the border, where the filters mirror
        mask[:scale], mask[-scale:], mask[:, :scale], mask[:, -scale:] = False, False, False, False
    return (metrics.invented_texture(out, bicubic, original, flat),
            metrics.invented_texture(out, bicubic, original, flat, sigma=COARSE_SIGMA),
            metrics.detail_ratio(out, original, edges), float(flat.mean()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", action="append", metavar="DIR", help="extra model directory")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="measure only these models")
    args = parser.parse_args()
    store = ModelStore(args.models or (), include_user=False)
    engine = Engine(store, device="cpu", precision="fp32")
    sets = {"content photos": [photo(p) for p in sorted((SHARED / "content").glob("*.jpg"))],
            "Set14": [Image.open(p).convert("RGB") for p in image_paths([SHARED / "sr" / "Set14"])]}
    models = [m for m in store.list() if m.kind == "sr" and (not args.only or m.name in args.only)]
    print("invented: texture added on flat areas, not the original's (grey levels RMS; bicubic 0, lower is "
          f"cleaner); coarse: the same with patterns up to ~30 px (sigma {COARSE_SIGMA:g})\n"
          "crisp: fine detail on edges over the original's (1 = as crisp)\n")
    print(f"| model | {' | '.join(f'{name}: invented / coarse / crisp' for name in sets)} | amber alone: invented |")
    print("| --- |" + " --- |" * (len(sets) + 1))
    for scale in sorted({m.scale for m in models}):
        rows = [(f"bicubic x{scale}", None)] + [(m.name, m) for m in models if m.scale == scale]
        for label, info in rows:
            upscale = None if info is None else (lambda rgb, name=info.name: engine.upscale(rgb, None, name)[0])
            cells, amber = [], None
            for name, images in sets.items():
                results = [measure(upscale, image, scale) for image in images]
                used = [r for r in results if r[3] >= 0.01]   # images with at least 1 % flat pixels
                cells.append(f"{np.mean([r[0] for r in used]):.2f} / {np.mean([r[1] for r in used]):.2f} / "
                             f"{np.mean([r[2] for r in results]):.2f}")
                if name == "content photos":
                    amber = results[0][0]
            print(f"| {label} | {' | '.join(cells)} | {amber:.2f} |", flush=True)


if __name__ == "__main__":
    main()
