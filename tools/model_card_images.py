"""The pictures of docs/models.md, made with the bundled models through the backend engine.

    python tools/model_card_images.py [--out docs/img/models]

Writes ``styles.jpg`` (every style on the three shared content photos), ``sr_x4.png``
(bicubic / x4 pixel loss / x4 feature loss / HR, zoomed crops of Set5 and Set14 images),
``sr_x4_stretched.png`` (the same methods on smooth areas, contrast stretched four times, where
a checkerboard would show), ``sr_flat_amber.png`` (amber's flat areas upscaled x4 and x8 at 100 %
and 200 %: where ``sr_x4_feat`` paints its crosshatch, measured by ``benchmarks/bench_sr_flat.py``)
and ``tiles_2048.jpg`` (a 2048-pixel stylisation, forced into tiles, with 1:1 crops
where tiles meet).
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.engine import Engine, style_tile  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402
from trainer.eval_sr import crop_to_multiple, degrade, detail_box  # noqa: E402

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or ROOT.parent / "shared") / "data"
STYLES = ["starry_night", "wave", "the_scream", "composition_vii", "udnie"]
SR_IMAGES = [SHARED / "sr" / "Set5" / "butterfly.png", SHARED / "sr" / "Set14" / "zebra.png",
             SHARED / "sr" / "Set14" / "comic.png"]
SMOOTH_CROPS = [(SHARED / "sr" / "Set14" / "lenna.png", (40, 40)),
                (SHARED / "sr" / "Set5" / "butterfly.png", (40, 150)),
                (SHARED / "sr" / "Set14" / "comic.png", (150, 300))]   # (image, top-left of a 48-px crop)
AMBER_FLAT_CROPS = [(352, 176), (64, 96)]   # top-left of 192-px crops of amber at 1024 px: cream stone, bricks
LABEL = 18


def as_array(image):
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255


def as_image(array):
    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))


def labelled_grid(rows, cell_width, cell_height):
    """Paste ``rows`` (lists of (label, PIL image)) into a white grid with labels under each cell."""
    columns = max(len(row) for row in rows)
    grid = Image.new("RGB", (columns * cell_width, len(rows) * (cell_height + LABEL)), "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        top = r * (cell_height + LABEL)
        for c, (label, image) in enumerate(row):
            grid.paste(image, (c * cell_width + (cell_width - image.width) // 2, top))
            draw.text((c * cell_width + 4, top + cell_height + 3), label, fill="black")
    return grid


def styles_grid(engine, size=320):
    photos = sorted((SHARED / "content").glob("*.jpg"))
    originals = []
    for path in photos:
        image = Image.open(path).convert("RGB")
        image.thumbnail((size, size), Image.LANCZOS)
        originals.append(image)
    rows = [[(f"{p.stem} (original)", image) for p, image in zip(photos, originals)]]
    for name in STYLES:
        rows.append([(name, as_image(engine.stylize(as_array(image), None, name)[0])) for image in originals])
    return labelled_grid(rows, size, size)


def default_label(engine, name, label=None):
    """``label`` (default: the model's name), marked when the engine uses the model for its scale by default."""
    label = label or name
    return f"{label} (default)" if engine.store.find_sr(engine.store.get(name).scale).name == name else label


def x4_results(engine, hr):
    """(label, image) for bicubic, the two x4 models and the original, all of ``hr``'s size."""
    lr = degrade(hr, 4)
    return [("bicubic", lr.resize(hr.size, Image.BICUBIC)),
            (default_label(engine, "sr_x4_pixel", "x4 pixel loss"),
             as_image(engine.upscale(as_array(lr), None, "sr_x4_pixel")[0])),
            (default_label(engine, "sr_x4_feat", "x4 feature loss"),
             as_image(engine.upscale(as_array(lr), None, "sr_x4_feat")[0])),
            ("HR (original)", hr)]


def sr_grid(engine, crop=72, zoom=3):
    rows = []
    for path in SR_IMAGES:
        hr = crop_to_multiple(Image.open(path).convert("RGB"), 4)
        box = detail_box(hr, crop)
        results = x4_results(engine, hr)
        overview = hr.copy()
        ImageDraw.Draw(overview).rectangle(box, outline=(255, 0, 0), width=2)
        overview.thumbnail((crop * zoom, crop * zoom))
        row = [(path.stem, overview)]
        row += [(label, image.crop(box).resize((crop * zoom, crop * zoom), Image.NEAREST)) for label, image in results]
        rows.append(row)
    return labelled_grid(rows, crop * zoom, crop * zoom)


def stretched_grid(engine, crop=48, zoom=6, gain=4):
    """Smooth crops (``SMOOTH_CROPS``) with their contrast stretched ``gain`` times around the
    crop's mean colour: a faint pattern locked to the pixel grid becomes visible."""
    rows = []
    for path, (left, top) in SMOOTH_CROPS:
        hr = crop_to_multiple(Image.open(path).convert("RGB"), 4)
        row = []
        for label, image in x4_results(engine, hr):
            part = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255
            part = (part - part.mean(axis=(0, 1))) * gain + 0.5
            row.append((f"{label}, x{gain} contrast", as_image(part).resize((crop * zoom, crop * zoom),
                                                                              Image.NEAREST)))
        rows.append(row)
    return labelled_grid(rows, crop * zoom, crop * zoom)


def flat_grid(engine, crop=192):
    """amber (1024 px) downscaled x4 and x8 and upscaled back: crops of flat areas at 100 % and 200 %."""
    photo = Image.open(SHARED / "content" / "amber.jpg").convert("RGB")
    hr = photo.resize((1024, round(1024 * photo.height / photo.width)), Image.LANCZOS)
    rows = []
    for scale, models in ((4, ["sr_x4_pixel", "sr_x4_feat"]), (8, ["sr_x8_feat"])):
        lr = degrade(hr, scale)
        results = [(f"bicubic x{scale}", lr.resize(hr.size, Image.BICUBIC))]
        results += [(default_label(engine, name), as_image(engine.upscale(as_array(lr), None, name)[0]))
                    for name in models]
        results.append(("original", hr))
        for left, top in AMBER_FLAT_CROPS:
            box = (left, top, left + crop, top + crop)
            rows.append([(f"{label}, 100%", image.crop(box)) for label, image in results])
            half = (left + crop // 4, top + crop // 4, left + 3 * crop // 4, top + 3 * crop // 4)
            rows.append([(f"{label}, 200%", image.crop(half).resize((crop, crop), Image.NEAREST))
                         for label, image in results])
    return labelled_grid(rows, crop, crop)


def tiles_grid(engine, model="starry_night", size=2048, crop=256):
    photo = Image.open(SHARED / "content" / "chicago.jpg").convert("RGB")
    photo = photo.resize((size, round(size * photo.height / photo.width)), Image.BICUBIC)
    steps = []
    result = as_image(engine.stylize(as_array(photo), None, model, progress=lambda done, total: steps.append(done))[0])
    if len(steps) < 2:
        raise SystemExit(f"the {size}-px check ran whole with {engine.tile_size}-px tiles; give a smaller --tile-size")
    overview = result.copy()
    overview.thumbnail((crop * 2, crop * 2))
    centre = (result.width // 2 - crop // 2, result.height // 2 - crop // 2)
    corner = (result.width // 2 - crop, result.height // 2 - crop)
    # the tiles start in the mirrored margin, so their boundaries lie near, not on, the centre
    crops = [("1:1 at the centre", result.crop((*centre, centre[0] + crop, centre[1] + crop))),
             (f"1:1 above-left of it ({style_tile(engine.tile_size)}-px tile boundaries cross it)",
              result.crop((*corner, corner[0] + crop, corner[1] + crop)))]
    return labelled_grid([[(f"{model}, {result.width}x{result.height}", overview)] + crops],
                         overview.width, overview.height)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "models")
    parser.add_argument("--tile-size", type=int, default=1024,
                        help="engine tile size for the 2048-px check (smaller than 2048, so that it tiles)")
    parser.add_argument("--only", nargs="+", choices=("styles", "sr", "tiles"), default=("styles", "sr", "tiles"),
                        help="redraw only these pictures (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = ModelStore(include_user=False)
    engine = Engine(store, device="cpu")
    pictures = {"styles": [("styles.jpg", lambda: styles_grid(engine))],
                "sr": [("sr_x4.png", lambda: sr_grid(engine)), ("sr_x4_stretched.png", lambda: stretched_grid(engine)),
                       ("sr_flat_amber.png", lambda: flat_grid(engine))],
                "tiles": [("tiles_2048.jpg",
                           lambda: tiles_grid(Engine(store, device="cpu", tile_size=args.tile_size)))]}
    for group in args.only:
        for name, draw in pictures[group]:
            draw().save(args.out / name, quality=90 if name == "tiles_2048.jpg" else 88)
            print("wrote", args.out / name)


if __name__ == "__main__":
    main()
