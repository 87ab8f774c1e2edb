"""Run style and super-resolution nets on images: device and precision choice, tiling, options.

Images here are float32 H x W x 3 sRGB in [0, 1] plus an optional float32 H x W
straight alpha (see :mod:`backend.pixels`).

Precision (``precision="auto"``):

- CPU with native bf16 (AVX512-BF16 / AMX): bf16 weights and activations, channels-last,
  instance norm as one fused kernel with float32 statistics, sub-pixel upsampling
  convolutions and convolutions computed in strips of rows, without a padded copy of their
  whole input (:mod:`backend.fastnet`). Elsewhere: fp32 (same layout and rewrites).
- CUDA: bf16 where the GPU supports it, else fp16, same scheme.

docs/models.md ("Speed, precision and large images") has the measured speed and accuracy of each.

In bf16 or fp16 the last convolution, the output mapping and a residual SR net's bicubic base
run in float32 (:func:`backend.fastnet.with_float32_output`), so 16-bit images keep 16-bit
levels. Accuracy bound of a non-fp32 precision: PSNR >= 40 dB against the fp32 output of the
same net on the same image.

Style nets trained without a border (most, the bundled ones included) learn to paint lines
along the image's edge. The engine runs them on the image mirrored out past their reach
(:func:`edge_margin`: 84 pixels for 8 residual blocks) with every instance norm's statistics
taken from the image alone, and crops the result back; a model's metadata can turn this off
(``"mirror_edges": false``). A net trained with a ``border`` is run on the image mirrored out
by its border, as its forward does, with statistics that include the border. Tiled, only the
tiles at the image's edge read the mirrored margin.

A distilled (lite) net's output gets its photo's pattern on the net's 4-px stride grid in
place of its own (:mod:`backend.stride_pattern`), as the targets it was taught from did.

Style images of up to ``tile_size``**2 pixels (2048**2 by default) run whole. Larger ones run
in tiles of half that side that use the whole image's exact instance-norm statistics
(see :mod:`backend.tiling`): no seams, and the same output as an untiled run up to rounding.
The tiles are smaller than the largest image that runs whole because a tiled run also holds
whole tensors at half resolution (16 values per image pixel), so the tiles' own activations
must stay small beside them. SR nets tile exactly with context alone.

Out of memory (CUDA's error, the CPU allocator's or oneDNN's RuntimeError, numpy's MemoryError): the
run starts again with tiles of half the side, down to ``MIN_TILE`` (``MIN_SR_TILE``
low-resolution pixels for SR), and then raises :class:`backend.protocol.OutOfMemory`.
Errors are the protocol's typed exceptions (:mod:`backend.protocol`), which carry their wire code.
"""

import collections
import logging
import os
import threading

import numpy as np
import torch
import torch.nn.functional as F

from backend import fastnet, tiling
from backend.nets import STYLE_STRIDE, edge_hiding_border, mirror_pad
from backend.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from backend.protocol import BadPixels, BadRequest, OutOfMemory, UnknownModel, check_strength
from backend.stride_pattern import replace_phase_pattern

log = logging.getLogger("brushwork.engine")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_TILE, MIN_SR_TILE = 128, 64   # out-of-memory retries stop below these tile sizes
STYLE_CONTEXT, STYLE_BLEND = 16, 32                    # image pixels (the style net needs context >= 8)
SR_CONTEXT, SR_BLEND = 16, 8                           # low-resolution pixels
MIN_STYLE_SIZE, MIN_SR_SIZE = 16, 8                    # smaller inputs are padded up to this
_CACHED_NETS = 8


def resolve_device(device="auto"):
    """'auto' -> 'cuda' if available else 'cpu'; 'cpu', 'cuda', 'cuda:N' are checked and returned."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        if not torch.cuda.is_available():
            raise BadRequest(f"device {device!r} requested but CUDA is not available")
        index = torch.device(device).index or 0
        if index >= torch.cuda.device_count():
            raise BadRequest(f"no CUDA device {index} (found {torch.cuda.device_count()})")
        return device
    raise BadRequest(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)")


def resolve_precision(precision, device):
    """'auto' -> the fastest precision for ``device`` that keeps >= 40 dB vs fp32 (see module doc)."""
    if precision in (None, "auto"):
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() \
            else "fp32"
    if precision not in _DTYPES:
        raise BadRequest(f"unknown precision {precision!r} (expected auto, fp32, bf16 or fp16)")
    return precision


def _default_tile_size(device):
    """Largest input tile (pixels per side) for a style net that comfortably fits in memory."""
    if device.startswith("cuda"):
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 8 << 30
    return 2048 if total >= 8 << 30 else 1024


# How the CPU allocator and oneDNN (which cannot allocate a convolution's scratch memory when
# creating its primitive) word their RuntimeErrors when memory runs out.
OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "not enough memory", "could not create a primitive")


def _is_out_of_memory(exc):
    """True for the device's out-of-memory errors: CUDA's, the CPU allocator's or oneDNN's RuntimeError,
    numpy's MemoryError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in OUT_OF_MEMORY_TEXTS)


def _mirrored(image, align, min_size, margin):
    """``image`` (HxWx3) extended at the bottom and right to sides that are multiples of ``align``
    and at least ``min_size``, then mirrored out by ``margin`` on every side (each step with
    :func:`backend.nets.mirror_pad`)."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(-height % align, min_size - height), max(-width % align, min_size - width)
    if not (pad_h or pad_w or margin):
        return image
    x = tiling.to_input(image, "cpu", torch.float32)
    if pad_h or pad_w:
        x = mirror_pad(x, (0, pad_w, 0, pad_h))
    if margin:
        x = mirror_pad(x, margin)
    return tiling.to_image(x)


def _check_image(rgb, alpha, mask):
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise BadPixels(f"image must be H x W x 3, got shape {rgb.shape}")
    rgb = rgb.astype(np.float32, copy=False)
    for name, plane in (("alpha", alpha), ("mask", mask)):
        if plane is not None and np.shape(plane) != rgb.shape[:2]:
            raise BadPixels(f"{name} must be {rgb.shape[0]} x {rgb.shape[1]}, got shape {np.shape(plane)}")
    alpha = None if alpha is None else np.asarray(alpha, np.float32)
    mask = None if mask is None else np.clip(np.asarray(mask, np.float32), 0, 1)
    return rgb, alpha, mask


def resize(plane, height, width, mode="bicubic"):
    """Resize an HxW or HxWxC float32 array with torch's interpolation (clamped to [0, 1])."""
    tensor = torch.from_numpy(np.ascontiguousarray(plane))
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=(height, width), mode=mode, align_corners=False).clamp_(0, 1)
    return out[0, 0].numpy() if plane.ndim == 2 else out[0].permute(1, 2, 0).contiguous().numpy()


def match_histograms(image, reference, bins=4096):
    """Give each channel of ``image`` the value distribution of the same channel of ``reference``."""
    out = np.empty_like(image)
    edges = np.linspace(0, 1, bins + 1, dtype=np.float32)
    for c in range(image.shape[2]):
        src_cdf = np.cumsum(np.histogram(image[..., c], bins=bins, range=(0, 1))[0]).astype(np.float64)
        ref_cdf = np.cumsum(np.histogram(reference[..., c], bins=bins, range=(0, 1))[0]).astype(np.float64)
        src_cdf /= src_cdf[-1]
        ref_cdf /= ref_cdf[-1]
        quantile = np.interp(image[..., c], edges, np.concatenate([[0.0], src_cdf]))
        out[..., c] = np.interp(quantile, np.concatenate([[0.0], ref_cdf]), edges)
    return out


def _fill_transparent(rgb, alpha):
    """Copy of ``rgb`` whose fully transparent pixels hold the mean visible colour.

    Editors keep arbitrary colour under alpha 0; left there it would leak into
    neighbouring pixels and into the instance-norm statistics.
    """
    hidden = alpha <= 0
    if not hidden.any() or hidden.all():
        return rgb
    filled = rgb.copy()
    filled[hidden] = (rgb * alpha[..., None]).sum((0, 1)) / alpha.sum()
    return filled


def style_tile(tile_size):
    """The side of the tiles that a style image larger than ``tile_size``**2 runs in: half of it
    (see the module docstring), and at least ``MIN_TILE``."""
    return max(tile_size // 2, MIN_TILE)


def edge_margin(info, net):
    """How many pixels the engine mirrors the image out by, beyond a net's own border, for style
    model ``info`` (its net ``net``): past the net's reach for a net trained without a border,
    unless its metadata says ``"mirror_edges": false``; else 0."""
    if info.kind != "style" or net.border or not info.metadata.get("mirror_edges", True):
        return 0
    return edge_hiding_border(net.blocks)


class Engine:
    """Runs models from a ModelStore on images; one job at a time (calls are serialised)."""

    def __init__(self, store, device="auto", precision="auto", tile_size=None):
        self.store = store
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.tile_size = int(tile_size) if tile_size else _default_tile_size(self.device)
        if self.tile_size < MIN_TILE:
            raise BadRequest(f"tile size must be at least {MIN_TILE}")
        self._dtype = _DTYPES[self.precision]
        self._lock = threading.Lock()
        self._nets = collections.OrderedDict()     # model name -> (store's net, prepared copy, margin)

    def _prepared(self, info):
        """(net, margin): the store's net for ``info`` converted for this device/precision, and how
        many pixels its input is mirrored out by: its own ``border`` or its :func:`edge_margin` (cached)."""
        base = self.store.load(info)
        cached = self._nets.get(info.name)
        if cached is not None and cached[0] is base:
            self._nets.move_to_end(info.name)
            return cached[1:]
        net = fastnet.with_strip_convolutions(fastnet.with_subpixel_upsampling(tiling.with_stats_norms(base)))
        net = net.to(self.device, self._dtype, memory_format=torch.channels_last)
        net = fastnet.with_float32_output(net)
        margin = edge_margin(info, base)
        if margin:
            tiling.keep_statistics_inside(net, margin)
        margin += getattr(base, "border", 0)
        net.requires_grad_(False)
        self._nets[info.name] = (base, net, margin)
        while len(self._nets) > _CACHED_NETS:
            self._nets.popitem(last=False)
        return net, margin

    def _forward(self, function):
        """A numpy -> numpy function running ``function`` (a net's) on a whole HxWx3 image or tile."""
        def forward(tile):
            with torch.inference_mode():
                return tiling.to_image(function(tiling.to_input(tile, self.device, torch.float32)))
        return forward

    def _run(self, net, image, scale, progress, is_cancelled, margin=0):
        """Run ``net`` over ``image`` (a style net: mirrored ``margin`` pixels out, as :meth:`_prepared`
        says), tiled if needed; retry with halved tiles on out-of-memory."""
        min_tile = MIN_TILE if scale == 1 else MIN_SR_TILE
        tile = self.tile_size if scale == 1 else max(MIN_SR_TILE, self.tile_size // (2 * scale))
        while True:
            try:
                return self._attempt(net, image, scale, tile, margin, progress, is_cancelled)
            except (RuntimeError, MemoryError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            # Out of memory. Here, outside the except clause, the failed attempt's tensors are freed.
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            log.warning("out of memory on %s with %d-pixel tiles: %s", self.device, tile, reason)
            smaller = min(tile, max(image.shape[:2]) + 2 * margin) // 2
            if smaller < min_tile:
                raise OutOfMemory(f"out of memory on {self.device} even with {tile}-pixel tiles; try a "
                                  "smaller image or free memory")
            log.warning("retrying with %d-pixel tiles", smaller)
            tile = smaller

    def _attempt(self, net, image, scale, tile, margin, progress, is_cancelled):
        """One try of :meth:`_run` with ``tile``: the padded (and mirrored) copy of ``image`` that the
        net reads is made here and handed on, so that nothing else holds it once it has been read."""
        height, width = image.shape[:2]
        if scale > 1:
            result = tiling.run_tiled(self._forward(net), _mirrored(image, 1, MIN_SR_SIZE, 0), tile, SR_CONTEXT,
                                      SR_BLEND, progress=progress, is_cancelled=is_cancelled)
        elif height * width > tile * tile:   # the image, not its mirrored margin
            result = tiling.stylize_tiled(net, _mirrored(image, STYLE_STRIDE, MIN_STYLE_SIZE, margin),
                                          style_tile(tile), STYLE_CONTEXT, STYLE_BLEND, progress, is_cancelled)
        else:   # whole, with exact instance norm
            tiling.check_cancelled(is_cancelled)
            result = self._forward(net.transform)(_mirrored(image, STYLE_STRIDE, MIN_STYLE_SIZE, margin))
            if progress:
                progress(1, 1)
        return np.ascontiguousarray(result[margin:margin + height * scale, margin:margin + width * scale])

    def stylize(self, rgb, alpha, model, strength=1.0, preserve_colors=False, mask=None,
                progress=None, is_cancelled=None):
        """Apply style model ``model``; return (rgb, alpha). Alpha is returned untouched.

        ``strength`` (0..1) blends linearly with the original; ``preserve_colors`` keeps
        the original's chroma (YCbCr) and takes only the result's luma; ``mask`` (HxW,
        0..1) limits the effect to a soft selection.
        """
        rgb, alpha, mask = _check_image(rgb, alpha, mask)
        strength = check_strength(strength)
        info = self._style_model(model)
        if strength == 0 or (mask is not None and not mask.any()):
            return rgb.copy(), alpha
        source = rgb if alpha is None else _fill_transparent(rgb, alpha)
        with self._lock:
            net, margin = self._prepared(info)
            result = self._run(net, source, 1, progress, is_cancelled, margin)
        if info.teacher:   # a distilled net: its output cleaned as its targets were
            replace_phase_pattern(result, source)
        np.clip(result, 0, 1, out=result)
        if preserve_colors:
            ycc = rgb_to_ycbcr(rgb)
            ycc[..., 0] = rgb_to_ycbcr(result)[..., 0]
            result = np.clip(ycbcr_to_rgb(ycc), 0, 1)
        weight = np.float32(strength) if mask is None else np.float32(strength) * mask[..., None]
        if alpha is not None:
            weight = weight * (alpha[..., None] > 0)   # hidden colour stays as it was
        result -= rgb
        result *= weight
        result += rgb
        return result, alpha

    def _style_model(self, name):
        """The ModelInfo of style model ``name``; an error listing the style models if there is none."""
        try:
            info = self.store.get(name)
        except UnknownModel:
            info = None
        if info is None or info.kind != "style":
            styles = ", ".join(m.name for m in self.store.list() if m.kind == "style") or "none installed"
            if info is None:
                raise UnknownModel(f"no style model named {name!r} (style models: {styles})")
            raise BadRequest(f"model {name!r} is a {info.kind} model, not a style model (style models: {styles})")
        return info

    def upscale(self, rgb, alpha, model=None, scale=None, histogram_match=False, mask=None,
                progress=None, is_cancelled=None):
        """Super-resolve by ``scale``; return (rgb, alpha). ``model=None``: the store's default SR model
        for ``scale`` (None: 4); a named model must upscale by ``scale`` (None: its own).

        Alpha is upscaled bicubically (clamped). Colour is upscaled premultiplied, so the
        hidden colour of transparent pixels cannot bleed into visible ones.
        ``histogram_match`` matches each output channel's histogram to the input's (the
        paper's optional post-processing). Outside ``mask`` the result is a bicubic upscale.
        """
        rgb, alpha, mask = _check_image(rgb, alpha, mask)
        info = self.store.resolve_sr(model, scale)
        scale = info.scale
        height, width = rgb.shape[0] * scale, rgb.shape[1] * scale
        translucent = alpha is not None and bool((alpha < 1).any())
        source = rgb * alpha[..., None] if translucent else rgb
        with self._lock:
            result = self._run(self._prepared(info)[0], source, scale, progress, is_cancelled)
        np.clip(result, 0, 1, out=result)
        big_alpha = None if alpha is None else resize(alpha, height, width)
        if translucent:
            visible = big_alpha > 1 / 1024
            result[visible] /= big_alpha[visible][:, None]
            result[~visible] = 0
            np.clip(result, 0, 1, out=result)
        if histogram_match:
            result = match_histograms(result, rgb)
        if mask is not None:
            weight = resize(mask, height, width, mode="bilinear")[..., None]
            plain = resize(source, height, width)
            if translucent:
                plain[visible] /= big_alpha[visible][:, None]
                plain[~visible] = 0
                np.clip(plain, 0, 1, out=plain)
            result = plain + weight * (result - plain)
        return result, big_alpha
