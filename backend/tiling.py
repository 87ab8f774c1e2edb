"""Run a net over an image in overlapping tiles, with no seams and bounded memory.

Two things make tiles of a style net agree with the whole-image result:

1. **Shared instance-norm statistics.** An InstanceNorm layer normalises with the mean
   and variance of its whole input, so a tile on its own would be normalised
   differently from its neighbours (visible blocks). :class:`StatsNorm` replaces each
   InstanceNorm2d; :func:`record_statistics` runs the net once over a thumbnail of the
   whole image (as URST, Chen et al. 2022, does) and :func:`freeze_statistics` makes
   every tile use those numbers. SR nets use BatchNorm, a fixed map at inference, so
   their tiles need no statistics at all.
2. **Context and feathering.** Each tile is read with ``context`` extra pixels on every
   side (thrown away afterwards) and neighbouring tiles overlap by ``blend`` pixels,
   where linear ramps that sum to one cross-fade them. At the image border no context
   exists; the net's own reflection padding then sees exactly what the untiled net sees.
"""

import copy
import math

import numpy as np
import torch
from torch import nn

from backend.protocol import BrushworkError


class StatsNorm(nn.Module):
    """InstanceNorm2d(affine=True) for one image at a time, with optional frozen statistics.

    Unfrozen it runs batch norm in training mode, which for a batch of one image is
    instance norm, and uses PyTorch's fast channels-last kernel (statistics accumulated
    in float32 even for bf16/fp16 activations). Frozen it is one fused per-channel
    ``x * scale + shift``.
    """

    def __init__(self, norm):
        super().__init__()
        self.eps = norm.eps
        self.register_buffer("weight", norm.weight.detach().float().clone())
        self.register_buffer("bias", norm.bias.detach().float().clone())
        self.frozen = None      # (mean, var), each float32 of shape (C,), or None: use the input's own
        self.recording = False  # keep the statistics of the next input in ``recorded``
        self.recorded = None

    def forward(self, x):
        if x.shape[0] != 1:
            raise ValueError("StatsNorm normalises one image at a time (batch size 1)")
        if self.frozen is None:
            out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
            if self.recording:
                self.recorded = (mean.float(), invstd.float().pow(-2) - self.eps)
            return out
        mean, var = self.frozen
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift.to(x.dtype).view(1, -1, 1, 1), x, scale.to(x.dtype).view(1, -1, 1, 1))


def with_stats_norms(net):
    """A deep copy of ``net`` with every InstanceNorm2d replaced by a :class:`StatsNorm`."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                setattr(module, name, StatsNorm(child))
    return net


def stats_norms(net):
    """The StatsNorm layers of ``net`` in forward order."""
    return [m for m in net.modules() if isinstance(m, StatsNorm)]


def record_statistics(net, forward, image):
    """Run ``forward(image)`` once, unfrozen; return each StatsNorm's input (mean, var)."""
    freeze_statistics(net, None)
    norms = stats_norms(net)
    for norm in norms:
        norm.recording, norm.recorded = True, None
    try:
        forward(image)
        return [norm.recorded for norm in norms]
    finally:
        for norm in norms:
            norm.recording, norm.recorded = False, None


def freeze_statistics(net, stats):
    """Make every StatsNorm use ``stats`` (from :func:`record_statistics`); ``None`` unfreezes."""
    for i, norm in enumerate(stats_norms(net)):
        norm.frozen = None if stats is None else stats[i]


def tile_count(height, width, tile, context, blend, align=1):
    """How many tiles :func:`run_tiled` uses for an image of this size."""
    return len(spans(height, tile, context, blend, align)) * len(spans(width, tile, context, blend, align))


def thumbnail(image, max_pixels):
    """Area-downscale an HxWx3 float32 image to at most ``max_pixels`` pixels (aspect kept)."""
    height, width = image.shape[:2]
    factor = math.sqrt(max_pixels / (height * width))
    if factor >= 1:
        return image
    size = (max(1, int(height * factor)), max(1, int(width * factor)))
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    small = torch.nn.functional.interpolate(tensor, size=size, mode="area")
    return small[0].permute(1, 2, 0).contiguous().numpy()


def spans(length, tile, context, blend, align=1):
    """Split ``[0, length)`` into tiles along one axis.

    Returns a list of ``(read_start, read_end, keep_start, keep_end)``: the net reads
    ``[read_start, read_end)`` (the kept part plus up to ``context`` on each side) and
    the output keeps ``[keep_start, keep_end)``. Consecutive kept parts overlap by
    exactly ``blend``. Starts are multiples of ``align`` (the net's total stride).
    """
    step = (tile - 2 * context - blend) // align * align
    if step < max(align, blend):
        raise ValueError(f"tile {tile} too small for context {context} and blend {blend}")
    if length <= tile:
        return [(0, length, 0, length)]
    count = max(1, math.ceil((length - blend) / step))
    result = []
    for i in range(count):
        keep_start = i * step
        keep_end = length if i == count - 1 else keep_start + step + blend
        result.append((max(0, keep_start - context), min(length, keep_end + context), keep_start, keep_end))
    return result


def _ramp(keep_length, blend, first, last):
    """1-D blending weights of one tile: ramps of width ``blend`` where a neighbour overlaps."""
    weights = np.ones(keep_length, np.float32)
    if blend:
        up = (np.arange(blend, dtype=np.float32) + 0.5) / blend
        if not first:
            weights[:blend] = up
        if not last:
            weights[keep_length - blend:] = 1 - up
    return weights


def run_tiled(forward, image, scale, tile, context, blend, align=1, progress=None, is_cancelled=None,
              done=0, total=None):
    """Apply ``forward`` (HxWx3 float32 -> (sH)x(sW)x3 float32) to ``image`` tile by tile.

    ``scale`` is the net's up-scaling factor; ``tile``, ``context``, ``blend`` and
    ``align`` are in input pixels. ``progress(done, total)`` is called after each tile
    (``done`` and ``total`` may include steps done elsewhere, e.g. a statistics pass);
    ``is_cancelled()`` is polled before each tile, and BrushworkError('cancelled') is
    raised when it returns True. Returns the blended (sH)x(sW)x3 float32 result.
    """
    height, width = image.shape[:2]
    rows = spans(height, tile, context, blend, align)
    cols = spans(width, tile, context, blend, align)
    total = total or len(rows) * len(cols) + done
    if len(rows) == 1 and len(cols) == 1:
        check_cancelled(is_cancelled)
        out = forward(image)
        if progress:
            progress(total, total)
        return out
    out = np.zeros((height * scale, width * scale, 3), np.float32)
    for r, (ry0, ry1, ky0, ky1) in enumerate(rows):
        wy = _ramp((ky1 - ky0) * scale, blend * scale, r == 0, r == len(rows) - 1)
        for c, (rx0, rx1, kx0, kx1) in enumerate(cols):
            check_cancelled(is_cancelled)
            wx = _ramp((kx1 - kx0) * scale, blend * scale, c == 0, c == len(cols) - 1)
            result = forward(image[ry0:ry1, rx0:rx1])
            kept = result[(ky0 - ry0) * scale:(ky1 - ry0) * scale, (kx0 - rx0) * scale:(kx1 - rx0) * scale]
            out[ky0 * scale:ky1 * scale, kx0 * scale:kx1 * scale] += kept * (wy[:, None, None] * wx[None, :, None])
            done += 1
            if progress:
                progress(done, total)
    return out


def check_cancelled(is_cancelled):
    """Raise BrushworkError('cancelled') if ``is_cancelled()`` says so."""
    if is_cancelled is not None and is_cancelled():
        raise BrushworkError("the job was cancelled", "cancelled")
