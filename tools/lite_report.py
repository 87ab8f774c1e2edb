"""How close a lite net (``brushwork train distill``) comes to its teacher, and a side-by-side sheet.

    python tools/lite_report.py --student starry_night_lite --models runs/starry_night_lite/models \\
        [--sizes 256 512] [--content-sizes 512 1024] [--sheet runs/starry_night_lite/side_by_side.png]

On the held-out photos (trainer/recipes/sun_hays80_holdout.txt; shorter side scaled to each
size, centre square, as ``brushwork eval style``), both nets run as the engine runs them (fp32,
mirrored edges unless a model says ``"mirror_edges": false``; the student's output given its
photo's period-4 pattern, :mod:`backend.stride_pattern`), and the table gives per size the
mean Eq. 5 objective (the teacher's VGG, loss weights and style image) of the teacher, of the
student and their ratio; the RMS of
the fixed period-4 pattern (:func:`trainer.distill_targets.phase_pattern`, 8-bit luma levels) of
the photos, the teacher and the student; and their edge ratio (:func:`trainer.metrics.edge_ratio`).
It also scores the *cleaned* teacher: its output with its period-4 pattern replaced by the photo's
(:func:`backend.stride_pattern.replace_phase_pattern`), which is what the student is taught. Eq. 5 rewards that pattern
(``starry_night``'s screen door lowers its teacher's objective by about 11 %), so a student
free of it is measured against the cleaned teacher (docs/models.md, "Lite nets"). Eq. 5 also
rewards an even spread of the style's texture over the photo's structure, so the table gives
the content term (the photo's structure at relu2_2) of the student over the cleaned teacher's
beside the sum. Eq. 5 judges
texture statistics, not where the teacher puts its large shapes, so the table also gives the
*coarse distance* to the cleaned teacher: the RMS difference (levels) of 8 x 8 px means, for the
photo (how far stylising moves it) and for the student.
A second table gives the same pattern RMS and edge ratio on each of the three shared content
photos (longer side scaled to each of ``--content-sizes``): issue 21's artefact checks, with the
*period-4 excess* (:func:`grid_excess`), which tells a pattern locked to the stride grid from a
texture's own fluctuation at every period, and the flat white patches ("holes",
:func:`trainer.metrics.blown_patches`) each net paints where the photo has none.
The sheet shows one photo's teacher output, student output and 4x their absolute difference.
Shared data: $BRUSHWORK_SHARED or ../shared beside the checkout.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.engine import Engine  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402
from backend.stride_pattern import replace_phase_pattern  # noqa: E402
from trainer.distill_targets import pattern_rms_levels, phase_pattern  # noqa: E402
from trainer.eval_style import square_content  # noqa: E402
from trainer.gatys import model_objective  # noqa: E402
from trainer.metrics import blown_patches, edge_ratio  # noqa: E402

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or ROOT.parent / "shared") / "data"
HOLDOUT = ROOT / "trainer" / "recipes" / "sun_hays80_holdout.txt"
COARSE = 8    # px: the coarse distance compares 8 x 8 px means, where large shapes are, not the strokes


def held_out_photos():
    names = [line.split("#", 1)[0].strip() for line in HOLDOUT.read_text().splitlines()]
    return [SHARED / "train" / "sun_hays80" / name for name in names if name]


def as_tensor(image):
    import torch
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def content_photos(size):
    """(name, H x W x 3 float32 array) of the three shared content photos, longer side ``size``."""
    photos = []
    for path in sorted((SHARED / "content").glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        image.thumbnail((size, size))
        photos.append((path.stem, np.asarray(image, np.float32) / 255))
    return photos


def measure(engine, objective, teacher, student, sizes):
    """Rows of the table: one per size, means over the held-out photos. ``cleaned`` is the
    teacher's output with its period-4 pattern replaced by the photo's, what the student is taught."""
    rows = []
    for size in sizes:
        sums = {}
        photos = held_out_photos()
        for path in photos:
            content = square_content(path, size)
            photo = content[0].permute(1, 2, 0).numpy()
            outputs = {"photo": photo, "teacher": engine.stylize(photo, None, teacher)[0],
                       "student": engine.stylize(photo, None, student)[0]}
            outputs["cleaned"] = np.clip(replace_phase_pattern(outputs["teacher"].copy(), photo), 0, 1)
            for label, image in outputs.items():
                pattern_rms = pattern_rms_levels(phase_pattern(image.transpose(2, 0, 1)[None]))
                sums[f"{label} pattern"] = sums.get(f"{label} pattern", 0) + pattern_rms
                sums[f"{label} edges"] = sums.get(f"{label} edges", 0) + edge_ratio(image * 255)
                if label != "photo":
                    total, parts = objective(as_tensor(image), content)
                    for term, value in (("objective", total), ("content", parts["content"])):
                        sums[f"{label} {term}"] = sums.get(f"{label} {term}", 0) + float(value)
                if label in ("photo", "student"):
                    value = coarse_distance(image, outputs["cleaned"])
                    sums[f"{label} coarse"] = sums.get(f"{label} coarse", 0) + value
        rows.append({"size": size, **{key: value / len(photos) for key, value in sums.items()}})
    return rows


def coarse_distance(image, reference):
    """RMS difference (8-bit levels) of the :data:`COARSE`-px means of two H x W x 3 images."""
    means = [F.avg_pool2d(as_tensor(x * 255.0), COARSE) for x in (image, reference)]
    return float((means[0] - means[1]).square().mean().sqrt())


def artefacts(engine, teacher, student, sizes):
    """Rows of the content-photo table: per photo and size, pattern RMS of photo, teacher, student,
    and the edge ratio and white patches (:func:`trainer.metrics.blown_patches`) of teacher and student."""
    rows = []
    for size in sizes:
        for name, photo in content_photos(size):
            outputs = [photo, engine.stylize(photo, None, teacher)[0], engine.stylize(photo, None, student)[0]]
            rows.append((name, photo.shape[1], photo.shape[0],
                         [pattern_rms_levels(phase_pattern(o.transpose(2, 0, 1)[None])) for o in outputs],
                         [grid_excess(o) for o in outputs], [edge_ratio(o * 255) for o in outputs[1:]],
                         [blown_patches(o * 255, photo * 255) for o in outputs[1:]]))
    lines = ["| photo | size | period-4 RMS photo / teacher / student (levels) | period-4 excess photo / teacher / "
             "student | edge ratio teacher / student | white patches teacher / student |",
             "|---|---|---|---|---|---|"]
    for name, width, height, rms, excess, edges, patches in rows:
        lines.append(f"| {name} | {width}x{height} | {' / '.join(f'{r:.2f}' for r in rms)} | "
                     f"{' / '.join(f'{e:.2f}' for e in excess)} | {' / '.join(f'{e:.2f}' for e in edges)} | "
                     f"{patches[0]} / {patches[1]} |")
    return "\n".join(lines)


def grid_excess(image):
    """How much an H x W x 3 image's period-4 pattern stands out from the same measure at periods 3
    and 5: RMS at 4 over the mean RMS at 3 and 5. Any texture has some pattern at every period (the
    finer and stronger the texture, the more), so the period-4 RMS alone rewards softness; a pattern
    locked to the net's 4-px stride grid raises period 4 alone. About 1 for photos and for a net
    without one; ``starry_night``'s screen door gives 20 or more."""
    rms = {period: pattern_rms_levels(phase_pattern(image.transpose(2, 0, 1)[None], period)) for period in (3, 4, 5)}
    return rms[4] / max((rms[3] + rms[5]) / 2, 1e-6)


def table(rows):
    lines = ["| size | teacher Eq. 5 | cleaned teacher Eq. 5 | student Eq. 5 | student / teacher | student / cleaned "
             "teacher | content term, student / cleaned teacher | coarse distance to cleaned teacher, photo / "
             "student (levels) | period-4 RMS photo / teacher / "
             "cleaned / student (levels) | edge ratio teacher / student |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['teacher objective']:.4g} | {r['cleaned objective']:.4g} | "
                     f"{r['student objective']:.4g} | {r['student objective'] / r['teacher objective']:.3f} | "
                     f"{r['student objective'] / r['cleaned objective']:.3f} | "
                     f"{r['student content'] / r['cleaned content']:.3f} | {r['photo coarse']:.1f} / "
                     f"{r['student coarse']:.1f} | {r['photo pattern']:.2f} / "
                     f"{r['teacher pattern']:.2f} / {r['cleaned pattern']:.2f} / {r['student pattern']:.2f} | "
                     f"{r['teacher edges']:.2f} / {r['student edges']:.2f} |")
    return "\n".join(lines)


def sheet(engine, teacher, student, path, size, out):
    """Teacher | student | 4 x |difference| for one photo, written to ``out``."""
    photo = square_content(path, size)[0].permute(1, 2, 0).numpy()
    a, b = engine.stylize(photo, None, teacher)[0], engine.stylize(photo, None, student)[0]
    panels = [a, b, np.clip(4 * np.abs(a - b), 0, 1)]
    row = np.concatenate([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=1) for p in panels], axis=1)[:, :-4]
    Image.fromarray(np.round(row * 255).astype(np.uint8)).save(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", required=True, help="the lite model")
    parser.add_argument("--models", action="append", default=[], help="extra model directory (repeatable)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--sheet", type=Path, default=None, metavar="PNG", help="write the side-by-side sheet here")
    parser.add_argument("--sheet-size", type=int, default=512)
    parser.add_argument("--content-sizes", nargs="*", type=int, default=[512, 1024],
                        help="longer sides of the content photos for the artefact table (none: no table)")
    args = parser.parse_args(argv)
    store = ModelStore(args.models)
    info = store.get(args.student)
    teacher = info.metadata.get("teacher")
    if not teacher:
        parser.error(f"{args.student} names no teacher: it is not a lite net")
    engine = Engine(store, device="cpu", precision="fp32")
    if args.sheet:
        sheet(engine, teacher, info.name, held_out_photos()[0], args.sheet_size, args.sheet)
        print(f"wrote {args.sheet}", flush=True)
    print(table(measure(engine, model_objective(store.get(teacher).metadata)[0], teacher, info.name, args.sizes)))
    if args.content_sizes:
        print(artefacts(engine, teacher, info.name, args.content_sizes))


if __name__ == "__main__":
    main()
