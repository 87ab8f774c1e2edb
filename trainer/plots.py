"""PNG side products of a training run: the preview grid and the loss curve."""

import io

import torch
from matplotlib.figure import Figure
from PIL import Image

from backend.model_save import write_atomic
from trainer.data import to_image


@torch.no_grad()
def run_for_preview(net, inputs):
    """``net`` on the batch ``inputs`` in eval mode (then back to training), as float32 on the CPU."""
    device = next(net.parameters()).device
    net.eval()
    try:
        return net(inputs.to(device)).float().cpu()
    finally:
        net.train()


def image_grid(rows):
    """Tile rows of equally sized 3 x H x W tensors into one PIL image (2 px gaps)."""
    rows = [[to_image(t) for t in row] for row in rows]
    w = max(im.width for row in rows for im in row)
    h = max(im.height for row in rows for im in row)
    columns = max(len(row) for row in rows)
    grid = Image.new("RGB", (columns * (w + 2) - 2, len(rows) * (h + 2) - 2), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im, (c * (w + 2), r * (h + 2)))
    return grid


def save_image(image, path):
    """Write a PIL image as PNG, atomically."""
    _write_png(path, lambda f: image.save(f, format="PNG"))


def save_loss_curve(history, path):
    """Plot ``history`` (``{"iteration": [...], "total": [...], term: [...]}``) on a log scale."""
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    steps = history["iteration"]
    for name, values in history.items():
        if name != "iteration" and values:
            ax.plot(steps, _smooth(values), label=name, linewidth=1.2 if name == "total" else 0.8)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted loss (moving average)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _write_png(path, lambda f: fig.savefig(f, format="png"))


def _write_png(path, save):
    """Call ``save(file_object)`` on a buffer and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    save(buffer)
    write_atomic(path, buffer.getvalue())


def _smooth(values, window=20):
    """Trailing moving average (same length as ``values``)."""
    v = torch.tensor(values, dtype=torch.float64)
    csum = torch.cat([torch.zeros(1, dtype=torch.float64), v.cumsum(0)])
    idx = torch.arange(1, len(v) + 1)
    start = (idx - window).clamp(min=0)
    return ((csum[idx] - csum[start]) / (idx - start)).tolist()
