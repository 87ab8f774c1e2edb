"""The image transformation networks of Johnson et al. (ECCV 2016).

Both nets take RGB in [0, 1] (sRGB working space), NCHW, and return RGB in [0, 1].
Their width and depth come from the model's metadata (``architecture``), so a
state dict plus that dict is all it takes to rebuild one: see :func:`build_net`, and
``net.architecture()`` for the way back.

A :class:`StyleNet` also names the stages its layers run in (:meth:`StyleNet.stages`), with
the resolution of each stage's input and output, so that :mod:`backend.tiling` can run it
over large images without knowing which layer is where.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Sequential):
    """Reflection-padded convolution (no zero borders, so no dark frame)."""

    def __init__(self, in_ch, out_ch, kernel, stride=1):
        super().__init__(
            nn.ReflectionPad2d(kernel // 2),
            nn.Conv2d(in_ch, out_ch, kernel, stride),
        )


UPSAMPLE_MODES = ("nearest", "bilinear")
STYLE_STRIDE = 4  # a StyleNet's encoder has two stride-2 convolutions: its input sides are multiples of this


class UpsampleConv(nn.Sequential):
    """x2 resize (``mode``: nearest or bilinear), then a convolution: upsampling without the
    overlap checkerboard of strided transposed convolutions."""

    def __init__(self, in_ch, out_ch, kernel=3, mode="nearest"):
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, not {mode!r}")
        resize = nn.Upsample(scale_factor=2, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        super().__init__(resize, ConvLayer(in_ch, out_ch, kernel))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with normalisation, added to the input (the paper's Fig. in the supplement)."""

    def __init__(self, channels, norm):
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3), norm(channels), nn.ReLU(inplace=True),
            ConvLayer(channels, channels, 3), norm(channels),
        )

    def forward(self, x):
        return x + self.body(x)


def instance_norm(channels):
    return nn.InstanceNorm2d(channels, affine=True)


def mirror_pad(x, border):
    """``x`` (NxCxHxW) mirrored out by ``border`` pixels: an int for every side, or
    ``(left, right, top, bottom)``. Repeated instead where ``x`` is too small to mirror."""
    left, right, top, bottom = (border,) * 4 if isinstance(border, int) else border
    mirrors = max(left, right) < x.shape[-1] and max(top, bottom) < x.shape[-2]
    return F.pad(x, (left, right, top, bottom), mode="reflect" if mirrors else "replicate")


def style_reach(blocks):
    """How many pixels away an input pixel can change a :class:`StyleNet` output pixel with
    ``blocks`` residual blocks, through its convolutions (instance norm's image-wide statistics
    carry no position): the two 9x9 convs, the strided 3x3 convs and their upsampling convs,
    two 3x3 convs per block at quarter resolution, and the stride phase. 57 px for 5 blocks."""
    return 17 + 8 * blocks


def edge_hiding_border(blocks):
    """The smallest ``border`` (a multiple of 4) at least :func:`style_reach` ``(blocks)``: 60 for 5 blocks."""
    return -(-style_reach(blocks) // 4) * 4


def to_pixel_range(x):
    """Map the last layer's output to [0, 1] with a scaled tanh, as the paper does."""
    return (torch.tanh(x) + 1) * 0.5


class PixelRange(nn.Module):
    """:func:`to_pixel_range` as a layer (no parameters)."""

    def forward(self, x):
        return to_pixel_range(x)


class Stage(NamedTuple):
    """A run of a net's layers, in order. Its input is ``reduction_in`` times smaller than the
    image on each side, its output ``reduction_out`` times."""

    name: str
    layers: list
    reduction_in: int
    reduction_out: int


class StyleNet(nn.Module):
    """Style image transformation network: 9x9 conv, two stride-2 convs, residual blocks,
    two x2 upsampling stages, 9x9 conv to RGB. Instance normalisation throughout.

    ``border`` > 0 (our addition): the input is mirrored ``border`` pixels out on every side
    and the output cropped back. A border of at least :func:`style_reach` hides the image's
    edge from the net, so a net trained with one cannot learn to paint lines along it
    (docs/models.md, "Styles").

    ``widths`` (our addition, for lite nets): the output channels of the encoder's three
    convolutions and of the decoder's two upsampling stages; the paper's are
    ``(c, 2c, 4c, 2c, c)`` for ``channels`` c. The residual blocks have the third.
    """

    def __init__(self, channels=32, blocks=5, border=0, widths=None):
        super().__init__()
        if border < 0 or border % STYLE_STRIDE:
            raise ValueError(f"border must be a multiple of {STYLE_STRIDE} and at least 0, got {border!r}")
        c = channels
        widths = tuple(widths or (c, 2 * c, 4 * c, 2 * c, c))
        if len(widths) != 5:
            raise ValueError(f"widths must give 5 channel counts, got {widths!r}")
        self.border, self.channels, self.blocks, self.widths = border, widths[0], blocks, widths
        e1, e2, e3, d1, d2 = widths
        self.encoder = nn.Sequential(
            ConvLayer(3, e1, 9), instance_norm(e1), nn.ReLU(inplace=True),
            ConvLayer(e1, e2, 3, stride=2), instance_norm(e2), nn.ReLU(inplace=True),
            ConvLayer(e2, e3, 3, stride=2), instance_norm(e3), nn.ReLU(inplace=True),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(e3, instance_norm) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            UpsampleConv(e3, d1), instance_norm(d1), nn.ReLU(inplace=True),
            UpsampleConv(d1, d2), instance_norm(d2), nn.ReLU(inplace=True),
            ConvLayer(d2, 3, 9),
        )

    def stages(self):
        """The layers of :meth:`transform` as :class:`Stage` s, cut where an activation below full
        resolution can be held whole: ``to_half`` (up to the encoder's second norm), ``to_quarter``
        (up to its third), ``middle`` (the rest of the encoder and the residual blocks, all at
        quarter resolution), ``up_to_half`` (the first upsampling, up to the decoder's first norm)
        and ``to_output`` (the rest, ending in :class:`PixelRange`)."""
        encoder, decoder = list(self.encoder), list(self.decoder)
        return [Stage("to_half", encoder[:4], 1, 2),
                Stage("to_quarter", encoder[4:7], 2, 4),
                Stage("middle", encoder[7:] + list(self.residuals), 4, 4),
                Stage("up_to_half", decoder[:1], 4, 2),
                Stage("to_output", decoder[1:] + [PixelRange()], 2, 1)]

    def transform(self, x):
        """The net on an input that is already mirrored out by :attr:`border` (no padding, no crop)."""
        for stage in self.stages():
            for layer in stage.layers:
                x = layer(x)
        return x

    def forward(self, x):
        b = self.border
        y = self.transform(mirror_pad(x, b) if b else x)
        return y[..., b:y.shape[-2] - b, b:y.shape[-1] - b] if b else y

    def architecture(self):
        """The ``architecture`` metadata dict that :func:`build_net` rebuilds this net from."""
        c = self.channels
        return {"type": "style", "channels": c, "blocks": self.blocks,
                **({"border": self.border} if self.border else {}),
                **({"widths": list(self.widths)} if self.widths != (c, 2 * c, 4 * c, 2 * c, c) else {})}


class SRNet(nn.Module):
    """Super-resolution network working in low-resolution space: 9x9 conv, residual blocks,
    log2(scale) learned x2 upsampling stages, 9x9 conv to RGB.

    Batch normalisation as in the paper; at inference it is a fixed per-channel affine map,
    so tiles of an image are processed exactly like the whole image.

    ``residual=True`` (our addition, as in VDSR): the net adds its output to a bicubic
    upscale of the input instead of producing the image through tanh, so it only learns the
    missing detail. Its last convolution starts at zero, so a new net is exactly bicubic.

    ``upsample="bilinear"`` (our addition): the x2 stages resize bilinearly instead of
    replicating each feature into a 2x2 block, which makes blocks locked to the
    low-resolution grid harder to learn (docs/models.md, "Super-resolution").
    """

    def __init__(self, scale=4, channels=64, blocks=4, residual=False, upsample="nearest"):
        super().__init__()
        if not isinstance(scale, int) or scale < 2 or scale & (scale - 1):
            raise ValueError(f"SR scale must be a power of two >= 2, got {scale!r}")
        stages = scale.bit_length() - 1
        c = channels
        self.head = nn.Sequential(ConvLayer(3, c, 9), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.residuals = nn.Sequential(*[ResidualBlock(c, nn.BatchNorm2d) for _ in range(blocks)])
        self.upsample = nn.Sequential(*[
            nn.Sequential(UpsampleConv(c, c, mode=upsample), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in range(stages)
        ])
        self.tail = ConvLayer(c, 3, 9)
        if residual:
            # Start as plain bicubic: a default-initialised tail adds noise that training would
            # first have to undo, which can kill every ReLU before any detail is learnt.
            nn.init.zeros_(self.tail[1].weight)
            nn.init.zeros_(self.tail[1].bias)
        self.scale, self.channels, self.blocks = scale, channels, blocks
        self.residual = residual
        self.upsample_mode = upsample

    def forward(self, x):
        detail = self.tail(self.upsample(self.residuals(self.head(x))))
        if self.residual:
            return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) + detail
        return to_pixel_range(detail)

    def architecture(self):
        """The ``architecture`` metadata dict that :func:`build_net` rebuilds this net from
        (options at their defaults left out)."""
        return {"type": "sr", "scale": self.scale, "channels": self.channels, "blocks": self.blocks,
                **({"residual": True} if self.residual else {}),
                **({"upsample": self.upsample_mode} if self.upsample_mode != "nearest" else {})}


def build_net(architecture):
    """Build an untrained net from a model's ``architecture`` metadata dict.

    ``{"type": "style", "channels": 32, "blocks": 5}`` (options: ``"border": 60``, ``"widths": [16, 32, 32, 16, 8]``) or
    ``{"type": "sr", "scale": 4, "channels": 64, "blocks": 4}`` (SR options: ``"residual": true``,
    ``"upsample": "bilinear"``).
    """
    kind = architecture.get("type")
    if kind == "style":
        widths = architecture.get("widths")
        return StyleNet(channels=int(architecture.get("channels", 32)), blocks=int(architecture.get("blocks", 5)),
                        border=int(architecture.get("border", 0)), widths=widths and [int(w) for w in widths])
    if kind == "sr":
        return SRNet(scale=int(architecture["scale"]), channels=int(architecture.get("channels", 64)),
                     blocks=int(architecture.get("blocks", 4)), residual=bool(architecture.get("residual", False)),
                     upsample=architecture.get("upsample", "nearest"))
    raise ValueError(f"unknown architecture type {kind!r} (expected 'style' or 'sr')")


def default_architecture(kind, scale=1):
    """The paper's architecture for ``kind`` ('style' or 'sr')."""
    if kind == "style":
        return {"type": "style", "channels": 32, "blocks": 5}
    return {"type": "sr", "scale": int(scale), "channels": 64, "blocks": 4}
