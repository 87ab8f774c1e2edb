"""The standard super-resolution benchmark protocol: HR cropped to a multiple of the scale, plain
Pillow bicubic downsampling, PSNR/SSIM on Y with ``scale`` pixels shaved (see :mod:`trainer.metrics`),
a model against bicubic upsampling; a Markdown table and a PNG grid of zoomed crops."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from trainer import data, metrics

GRID_CROP = 96        # HR pixels on a side of each zoomed crop
GRID_ZOOM = 2         # nearest-neighbour magnification of the crops
GRID_LABEL_HEIGHT = 28


def crop_to_multiple(image, scale):
    """Crop the right and bottom edges so that both sides are multiples of ``scale``."""
    width, height = image.size
    width, height = width - width % scale, height - height % scale
    if width < scale or height < scale:
        raise ValueError(f"image of {image.size} is smaller than the scale {scale}")
    return image.crop((0, 0, width, height))


def degrade(hr, scale):
    """The benchmark's low-resolution input: plain Pillow bicubic downsampling, no blur."""
    return hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC)


def _sr_runner(model):
    """A function LR PIL image -> SR PIL image for an nn.Module (NCHW [0,1] in and out) or a
    callable taking and returning float32 HxWx3 arrays in [0, 1] (e.g. an Engine's upscale)."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")

        def run(lr):
            model.eval()
            with torch.inference_mode():
                return data.to_image(model(data.to_tensor(lr)[None].to(device))[0])
        return run

    def run(lr):
        out = model(np.asarray(lr, dtype=np.float32) / 255.0)
        return Image.fromarray(metrics.to_uint8_array(np.asarray(out, dtype=np.float32)))
    return run


def evaluate_sr(model_or_callable, hr_paths, scale, keep_images=False):
    """Evaluate ``model_or_callable`` (None: bicubic only) on the HR images at ``hr_paths``.

    Returns one dict per image: ``image`` (file stem), ``bicubic_psnr``, ``bicubic_ssim``,
    ``bicubic_grid`` and, with a model, ``model_psnr``, ``model_ssim``, ``model_grid``; with
    ``keep_images`` also ``images``, a dict of PIL images ``lr``, ``bicubic``, ``model`` (if
    any) and ``hr``. ``*_grid`` is the upscale's checkerboard power (:func:`metrics.grid_energy`
    at the scale's period) over the HR image's own: about 1 or less is clean.
    """
    run = None if model_or_callable is None else _sr_runner(model_or_callable)
    rows = []
    for path in hr_paths:
        hr = crop_to_multiple(data.open_rgb(path), scale)
        lr = degrade(hr, scale)
        images = {"lr": lr, "bicubic": lr.resize(hr.size, Image.BICUBIC), "hr": hr}
        if run is not None:
            images["model"] = run(lr)
            if images["model"].size != hr.size:
                raise ValueError(f"the model turned {lr.size} into {images['model'].size}, "
                                 f"expected {hr.size} (is it a x{scale} model?)")
        row = {"image": Path(path).stem}
        hr_array = np.asarray(hr)
        hr_grid = metrics.grid_energy(hr_array, scale, shave=scale)
        for method in ("bicubic", "model"):
            if method in images:
                out = np.asarray(images[method])
                row[f"{method}_psnr"] = metrics.psnr(out, hr_array, shave=scale)
                row[f"{method}_ssim"] = metrics.ssim(out, hr_array, shave=scale)
                row[f"{method}_grid"] = metrics.grid_energy(out, scale, shave=scale) / max(hr_grid, 1e-12)
        if keep_images:
            row["images"] = images
        rows.append(row)
    return rows


def mean_row(rows):
    """The per-column mean of ``evaluate_sr`` rows (image ``mean``)."""
    keys = [k for k in rows[0] if k.endswith(("_psnr", "_ssim", "_grid"))]
    return {"image": "mean", **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def sr_table(rows, model_label="model"):
    """Markdown table of ``evaluate_sr`` rows followed by their mean."""
    methods = ["bicubic"] + (["model"] if "model_psnr" in rows[0] else [])
    labels = {"bicubic": "bicubic", "model": model_label}
    head = ["image"] + [f"{labels[m]} {q}" for m in methods for q in ("PSNR (dB)", "SSIM", "grid")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows + [mean_row(rows)]:
        cells = ["**mean**" if row["image"] == "mean" else row["image"]]
        for m in methods:
            cells += [f"{row[f'{m}_psnr']:.2f}", f"{row[f'{m}_ssim']:.4f}", f"{row[f'{m}_grid']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_box(hr, size):
    """The ``size`` x ``size`` box of ``hr`` with the most luma variance (the most telling crop)."""
    y = metrics.rgb_to_y(np.asarray(hr))
    height, width = y.shape
    size = min(size, width, height)
    step = max(size // 4, 1)
    best, best_box = -1.0, (0, 0, size, size)
    for top in range(0, height - size + 1, step):
        for left in range(0, width - size + 1, step):
            variance = float(y[top:top + size, left:left + size].var())
            if variance > best:
                best, best_box = variance, (left, top, left + size, top + size)
    return best_box


def sr_grid(rows, scale, model_label="model"):
    """A comparison grid of ``evaluate_sr(..., keep_images=True)`` rows: one row per image with
    the HR image (crop marked in red), then the zoomed crop of the LR input (nearest-upscaled),
    bicubic, the model (if any) and HR, each labelled with its PSNR/SSIM."""
    methods = ["lr", "bicubic"] + (["model"] if "model" in rows[0]["images"] else []) + ["hr"]
    titles = {"lr": f"LR input (x{scale} nearest)", "bicubic": "bicubic", "model": model_label, "hr": "HR"}
    cell = GRID_CROP * GRID_ZOOM
    grid = Image.new("RGB", (cell * (len(methods) + 1), (cell + GRID_LABEL_HEIGHT) * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        images = row["images"]
        hr = images["hr"]
        box = detail_box(hr, GRID_CROP)
        top = r * (cell + GRID_LABEL_HEIGHT)
        overview = hr.copy()
        ImageDraw.Draw(overview).rectangle(box, outline=(255, 0, 0), width=max(2, hr.width // 150))
        overview.thumbnail((cell, cell))
        grid.paste(overview, ((cell - overview.width) // 2, top + (cell - overview.height) // 2))
        draw.text((4, top + cell + 2), row["image"], fill="black")
        for c, method in enumerate(methods, start=1):
            source = images[method]
            if method == "lr":
                source = source.resize(hr.size, Image.NEAREST)
            crop = source.crop(box)
            crop = crop.resize((crop.width * GRID_ZOOM, crop.height * GRID_ZOOM), Image.NEAREST)
            grid.paste(crop, (c * cell, top))
            label = titles[method]
            if f"{method}_psnr" in row:
                label += f"\n{row[f'{method}_psnr']:.2f} dB / {row[f'{method}_ssim']:.4f}"
            draw.text((c * cell + 4, top + cell + 2), label, fill="black")
    return grid
