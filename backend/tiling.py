"""Run nets over large images in overlapping tiles: no seams, modest memory.

**Context and feathering** (:func:`run_tiled`). Each tile is read with ``context``
extra pixels on every side (thrown away afterwards) and neighbouring tiles overlap by
``blend`` pixels, where linear ramps that sum to one cross-fade them. At the image
border no context exists; the net's own padding then sees exactly what the untiled net
sees. That is all a super-resolution net needs: its BatchNorm is a fixed per-pixel map
at inference.

**Exact instance-norm statistics** (:func:`stylize_tiled`). An InstanceNorm layer
normalises with the mean and variance of its whole input, so a style-net tile normalised
on its own would differ from its neighbours. Instead every tile gets the whole image's exact
statistics. The net runs in the stages it names (:meth:`backend.nets.StyleNet.stages`), between
tensors that are held whole: the inputs of its norms below full resolution. No
full-resolution activation is ever held whole:

1. A stage that changes resolution runs in tiles. A norm that comes first in it takes its
   statistics from the whole input tensor; any other norm gets a tiled pass of its own that
   runs the stage up to that norm, with the earlier norms frozen to their now-known statistics
   (:class:`StatsNorm`), and sums its input over each tile's kept region (kept regions do not
   overlap). A last pass pastes the tiles' output into the next whole tensor or, for the
   last stage, cross-fades the output image.
2. The stage at the lowest resolution (most of the work) runs on its whole tensor with
   ordinary, exact instance norm.

**Statistics from the image alone.** A style net run on an image mirrored out by a margin
(see :mod:`backend.engine`) takes every norm's statistics from the image, not from the margin:
:func:`keep_statistics_inside` sets each :class:`StatsNorm`'s ``margin`` in its own input's
pixels, and the tiled passes leave those pixels out of their sums too. Only the tiles at the
image's edge read the margin.

Tile origins are multiples of the remaining encoder stride, so strided convolutions see
the same pixel grid as in the untiled net, and the context (8 image pixels suffice)
covers every pass's receptive field: the result is the untiled net's up to rounding, for
two extra full-resolution passes (docs/models.md, "Speed, precision and large images", has the
measured cost).
"""

import copy
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from backend.fastnet import SubpixelUpsampleConv
from backend.nets import STYLE_STRIDE
from backend.protocol import Cancelled

_CHUNK_ELEMENTS = 1 << 22   # activations summed at a time for statistics (a 16 MiB float32 buffer)


class StatsNorm(nn.Module):
    """InstanceNorm2d(affine=True) for one image at a time, with optional frozen statistics.

    Unfrozen it runs batch norm in training mode, which for a batch of one image is
    instance norm, and uses PyTorch's fast channels-last kernel (statistics accumulated
    in float32 even for bf16/fp16 activations). Frozen it is batch norm in evaluation
    mode with the frozen statistics: one per-channel affine map, computed in float32.
    """

    def __init__(self, norm):
        super().__init__()
        self.eps = norm.eps
        self.register_buffer("weight", norm.weight.detach().float().clone())
        self.register_buffer("bias", norm.bias.detach().float().clone())
        self.frozen = None      # (mean, var), each float32 of shape (C,), or None: use the input's own
        self.margin = 0         # input pixels on each side that the statistics leave out

    def forward(self, x):
        if x.shape[0] != 1:
            raise ValueError("StatsNorm normalises one image at a time (batch size 1)")
        if self.frozen is None and not self.margin:
            return torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)[0]
        if self.frozen is None:
            statistics = _Statistics()
            statistics.add(_inside(x[0].permute(1, 2, 0), self.margin))
            mean, var = statistics.mean_var()
        else:
            mean, var = self.frozen
        return torch.native_batch_norm(x, self.weight.float(), self.bias.float(), mean, var, False, 0.0, self.eps)[0]


def with_stats_norms(net):
    """A deep copy of ``net`` with every InstanceNorm2d replaced by a :class:`StatsNorm`."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                setattr(module, name, StatsNorm(child))
    return net


def keep_statistics_inside(net, margin):
    """Make every StatsNorm of ``net`` (a StyleNet prepared by :func:`with_stats_norms`) leave an
    image margin of ``margin`` pixels (a multiple of :data:`STYLE_STRIDE`) out of its statistics:
    for an image mirrored ``margin`` pixels out on every side. Returns ``net``."""
    if margin % STYLE_STRIDE:
        raise ValueError(f"margin must be a multiple of {STYLE_STRIDE}, not {margin}")
    reduction = 1   # how many times smaller than the image the current layer's input is
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            reduction *= module.stride[0]
        elif isinstance(module, (nn.Upsample, SubpixelUpsampleConv)):
            reduction //= 2
        elif isinstance(module, StatsNorm):
            module.margin = margin // reduction
    return net


def _inside(x, margin, region=None, size=None):
    """The part of the HxWxC tensor ``x`` at least ``margin`` pixels inside a whole tensor of
    ``size`` (default: ``x`` itself) of which ``x`` covers ``region`` (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = region or (0, x.shape[0], 0, x.shape[1])
    height, width = size or x.shape[:2]
    top, left = max(margin - y0, 0), max(margin - x0, 0)
    return x[top:max(top, min(y1, height - margin) - y0), left:max(left, min(x1, width - margin) - x0)]


def to_input(tile, device, dtype):
    """An HxWxC numpy array or tensor as a 1xCxHxW channels-last tensor on ``device``."""
    tensor = torch.as_tensor(tile).permute(2, 0, 1)[None]
    return tensor.to(device, dtype).contiguous(memory_format=torch.channels_last)


def to_image(tensor):
    """A 1xCxHxW tensor as an HxWxC float32 numpy array."""
    return tensor[0].permute(1, 2, 0).float().cpu().contiguous().numpy()


class _Steps:
    """Counts units of work for ``progress(done, total)``; polls ``is_cancelled()`` before each."""

    def __init__(self, total, progress, is_cancelled):
        self.done, self.total = 0, total
        self.progress, self.is_cancelled = progress, is_cancelled

    def start(self):
        check_cancelled(self.is_cancelled)

    def finish(self):
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


class _Statistics:
    """Per-channel mean and (biased) variance of many HxWxC tensors.

    Sums run in float32 over chunks of rows and in float64 across chunks:
    about 1e-7 relative error, several times faster than float64 throughout.
    """

    def __init__(self):
        self.count, self.sum, self.squares = 0, 0.0, 0.0

    def add(self, x):
        """Include the HxWxC tensor ``x``."""
        if not x.numel():
            return
        rows = max(1, _CHUNK_ELEMENTS // (x.shape[1] * x.shape[2]))
        buffer = torch.empty((min(rows, x.shape[0]), *x.shape[1:]), dtype=torch.float32, device=x.device)
        for i in range(0, x.shape[0], rows):
            chunk = buffer[:min(rows, x.shape[0] - i)]
            chunk.copy_(x[i:i + rows])
            self.sum = self.sum + chunk.sum((0, 1)).double()
            self.squares = self.squares + chunk.square_().sum((0, 1)).double()
        self.count += x.shape[0] * x.shape[1]

    def mean_var(self):
        mean = self.sum / self.count
        return mean.float(), (self.squares / self.count - mean.square()).clamp_(min=0).float()


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
    count = max(1, -(-(length - blend) // step))
    result = []
    for i in range(count):
        keep_start = i * step
        keep_end = length if i == count - 1 else keep_start + step + blend
        result.append((max(0, keep_start - context), min(length, keep_end + context), keep_start, keep_end))
    return result


def tile_count(height, width, tile, context, blend, align=1):
    """How many tiles cover a ``height`` x ``width`` image with this layout."""
    return len(spans(height, tile, context, blend, align)) * len(spans(width, tile, context, blend, align))


def _for_each_tile(forward, source, layout, steps, use):
    """Call ``use(kept, (y0, y1, x0, x1), (height, width))`` for each tile of ``source``.

    ``source`` is an HxWxC numpy array or tensor and ``layout`` is ``(tile, context,
    blend, align)`` in its pixels. ``forward`` maps a tile to an HxWxC' result at a
    fixed scale; ``kept`` is the part of it that the tile keeps, ``[y0:y1, x0:x1]`` is
    where that belongs in the whole result and ``(height, width)`` is that result's size.
    """
    rows, cols = spans(source.shape[0], *layout), spans(source.shape[1], *layout)
    for ry0, ry1, ky0, ky1 in rows:
        for rx0, rx1, kx0, kx1 in cols:
            steps.start()
            result = forward(source[ry0:ry1, rx0:rx1])
            scale = Fraction(result.shape[0], ry1 - ry0)
            y0, y1, x0, x1, top, left = (int(v * scale) for v in (ky0, ky1, kx0, kx1, ry0, rx0))
            size = (int(source.shape[0] * scale), int(source.shape[1] * scale))
            use(result[y0 - top:y1 - top, x0 - left:x1 - left], (y0, y1, x0, x1), size)
            steps.finish()


def _ramp(length, blend, first, last):
    """1-D blending weights of one tile: ramps of width ``blend`` where a neighbour overlaps."""
    weights = np.ones(length, np.float32)
    if blend:
        up = (np.arange(blend, dtype=np.float32) + 0.5) / blend
        if not first:
            weights[:blend] = up
        if not last:
            weights[length - blend:] = 1 - up
    return weights


def _blend_tiles(forward, source, layout, steps):
    """Cross-fade the HxWx3 float32 numpy results of ``forward`` on the tiles of ``source``."""
    if tile_count(source.shape[0], source.shape[1], *layout) == 1:
        steps.start()
        out = forward(source)
        steps.finish()
        return out
    out = None

    def add(kept, region, size):
        nonlocal out
        if out is None:
            out = np.zeros((*size, 3), np.float32)
        y0, y1, x0, x1 = region
        blend = layout[2] * size[0] // source.shape[0]
        wy = _ramp(y1 - y0, blend, y0 == 0, y1 == size[0])
        wx = _ramp(x1 - x0, blend, x0 == 0, x1 == size[1])
        out[y0:y1, x0:x1] += kept * (wy[:, None, None] * wx[None, :, None])

    _for_each_tile(forward, source, layout, steps, add)
    return out


def run_tiled(forward, image, tile, context, blend, align=1, progress=None, is_cancelled=None):
    """Apply ``forward`` (hxwx3 float32 -> (sh)x(sw)x3 float32, any fixed scale s) to ``image`` tile by tile.

    ``tile``, ``context``, ``blend`` and ``align`` are in input pixels. ``progress(done,
    total)`` is called after each tile; ``is_cancelled()`` is polled before each tile, and
    Cancelled is raised when it returns True. Returns the blended result.
    """
    layout = (tile, context, blend, align)
    steps = _Steps(tile_count(*image.shape[:2], *layout), progress, is_cancelled)
    return _blend_tiles(forward, image, layout, steps)


def _runner(layers, device, dtype, finish=lambda x: x[0].permute(1, 2, 0)):
    """A function of an HxWxC tile that applies ``layers`` and returns ``finish`` of the 1xCxHxW result
    (by default the HxWxC view of it)."""
    def forward(tile):
        x = to_input(tile, device, dtype)
        for layer in layers:
            x = layer(x)
        return finish(x)
    return forward


def _norm_indices(layers):
    return [i for i, layer in enumerate(layers) if isinstance(layer, StatsNorm)]


def _freeze_exact_statistics(layers, source, layout, steps, device, dtype):
    """Freeze each StatsNorm among ``layers`` to the statistics of its input over all of ``source``.

    A norm that comes first sees ``source`` itself; any other gets a tiled pass that runs
    ``layers`` up to it (earlier norms already frozen), with kept parts that do not overlap.
    A norm's ``margin`` is left out.
    """
    for i in _norm_indices(layers):
        statistics, margin = _Statistics(), layers[i].margin
        if i == 0:
            statistics.add(_inside(torch.as_tensor(source), margin))
        else:
            no_blend = (layout[0], layout[1], 0, layout[3])
            _for_each_tile(_runner(layers[:i], device, dtype), source, no_blend, steps,
                           lambda kept, region, size: statistics.add(_inside(kept, margin, region, size)))
        layers[i].frozen = statistics.mean_var()


def _stage_tiles(layers, height, width, layout):
    """How many tiles :func:`_freeze_exact_statistics` and one output pass of ``layers`` take."""
    passes = len([i for i in _norm_indices(layers) if i > 0])
    return passes * tile_count(height, width, layout[0], layout[1], 0, layout[3]) + tile_count(height, width, *layout)


def _materialised(layers, source, layout, steps, device, dtype):
    """``layers`` (with exact statistics) applied to ``source``, assembled from tiles: an HxWxC tensor."""
    _freeze_exact_statistics(layers, source, layout, steps, device, dtype)
    out = None

    def paste(kept, region, size):
        nonlocal out
        if out is None:
            out = torch.empty((*size, kept.shape[2]), dtype=kept.dtype, device=kept.device)
        y0, y1, x0, x1 = region
        out[y0:y1, x0:x1] = kept

    _for_each_tile(_runner(layers, device, dtype), source, layout, steps, paste)
    return out


def _runs_whole(stage, lowest):
    """True for a stage that stays at the net's lowest resolution: it runs on its whole tensor."""
    return stage.reduction_in == stage.reduction_out == lowest


def stylize_tiled(net, image, tile, context, blend, progress=None, is_cancelled=None):
    """Run a StyleNet (with StatsNorms, on its device and dtype) over ``image`` tile by tile:
    what ``net.transform`` computes, so an image that the net expects mirrored out by its
    ``border`` is passed mirrored.

    ``image`` is HxWx3 float32 with sides that are multiples of :data:`STYLE_STRIDE`;
    full-resolution tiles have at most ``tile``**2 pixels; ``context`` and ``blend`` are in
    image pixels, multiples of :data:`STYLE_STRIDE`. Every instance norm uses the whole image's exact
    statistics (see the module docstring). ``progress`` and ``is_cancelled`` are as for
    :func:`run_tiled`, counting the tiles of every pass and each whole-tensor layer.
    Returns HxWx3 float32.
    """
    height, width = image.shape[:2]
    if height % STYLE_STRIDE or width % STYLE_STRIDE or context % STYLE_STRIDE or blend % STYLE_STRIDE:
        raise ValueError(f"image sides, context and blend must be multiples of {STYLE_STRIDE}")
    parameter = next(net.parameters())
    device, dtype = parameter.device, parameter.dtype
    stages = net.stages()
    lowest = max(stage.reduction_in for stage in stages)

    def layout(stage):   # in the pixels of the stage's input; the last stage cross-fades its tiles
        reduction, fade = stage.reduction_in, blend if stage is stages[-1] else 0
        return tile // reduction, context // reduction, fade // reduction, STYLE_STRIDE // reduction

    steps = _Steps(sum(len(stage.layers) if _runs_whole(stage, lowest) else
                       _stage_tiles(stage.layers, height // stage.reduction_in, width // stage.reduction_in,
                                    layout(stage)) for stage in stages), progress, is_cancelled)
    try:
        with torch.inference_mode():
            x = image   # an HxWxC array or tensor between stages
            del image   # the first stage's result replaces it: the caller's copy need not outlive it
            for stage in stages[:-1]:
                if _runs_whole(stage, lowest):
                    x = x.permute(2, 0, 1)[None]
                    for layer in stage.layers:
                        steps.start()
                        x = layer(x)
                        steps.finish()
                    x = x[0].permute(1, 2, 0)
                else:
                    x = _materialised(stage.layers, x, layout(stage), steps, device, dtype)
            last = stages[-1]
            _freeze_exact_statistics(last.layers, x, layout(last), steps, device, dtype)
            return _blend_tiles(_runner(last.layers, device, dtype, to_image), x, layout(last), steps)
    finally:
        for module in net.modules():
            if isinstance(module, StatsNorm):
                module.frozen = None


def check_cancelled(is_cancelled):
    """Raise :class:`backend.protocol.Cancelled` if ``is_cancelled()`` says so."""
    if is_cancelled is not None and is_cancelled():
        raise Cancelled("the job was cancelled")
