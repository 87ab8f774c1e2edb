"""Before/after corner crops of every bundled style: run plainly, and as the engine runs it by
default (mirrored out past the net's reach, statistics from the image alone).

    python tools/edge_crops.py [--out docs/img/models/edges.jpg] [--photo chicago] [--width 512]

Each row is one style on a shared content photo: the top-left and bottom-right corners, plain
and mirrored, magnified without smoothing, so that every side's outermost pixels show.
Shared data: $BRUSHWORK_SHARED or ../shared beside the checkout.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from backend.engine import Engine  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402
from model_card_images import STYLES, as_array, as_image, labelled_grid  # noqa: E402

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or ROOT.parent / "shared") / "data"


def corner_rows(engine, photo, plain_names, crop, zoom):
    """For each style: (label, crop) of its top-left and bottom-right corners, plain and mirrored."""
    rows = []
    for name in STYLES:
        results = {"plain": as_image(engine.stylize(photo, None, plain_names[name])[0]),
                   "mirrored": as_image(engine.stylize(photo, None, name)[0])}
        width, height = results["plain"].size
        row = []
        for corner, box in (("top left", (0, 0, crop, crop)),
                            ("bottom right", (width - crop, height - crop, width, height))):
            for way, image in results.items():
                row.append((f"{name}, {corner}, {way}", image.crop(box).resize((crop * zoom, crop * zoom),
                                                                               Image.NEAREST)))
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "models" / "edges.jpg")
    parser.add_argument("--photo", default="chicago", help="a shared content photo (default chicago)")
    parser.add_argument("--width", type=int, default=512, help="its width in pixels (default 512)")
    parser.add_argument("--crop", type=int, default=64, help="corner crop side in pixels (default 64)")
    parser.add_argument("--zoom", type=int, default=4, help="magnification (default 4)")
    args = parser.parse_args()
    photo = Image.open(SHARED / "content" / f"{args.photo}.jpg").convert("RGB")
    photo = as_array(photo.resize((args.width, round(args.width * photo.height / photo.width)), Image.LANCZOS))
    plain_dir = tempfile.mkdtemp(prefix="edge-crops-")
    try:
        bundled = ModelStore(include_user=False)
        plain_names = {}
        for name in STYLES:   # a copy of each model with "mirror_edges": false
            info = bundled.get(name)
            plain_names[name] = f"{name}_plain"
            meta = dict(info.metadata, name=plain_names[name], weights=f"{plain_names[name]}.safetensors",
                        mirror_edges=False)
            shutil.copy(info.weights_path, Path(plain_dir) / meta["weights"])
            (Path(plain_dir) / f"{plain_names[name]}.json").write_text(json.dumps(meta))
        engine = Engine(ModelStore(plain_dir, include_user=False), device="cpu", precision="fp32")
        rows = corner_rows(engine, photo, plain_names, args.crop, args.zoom)
    finally:
        shutil.rmtree(plain_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(rows, args.crop * args.zoom + 8, args.crop * args.zoom).save(args.out, quality=90)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
