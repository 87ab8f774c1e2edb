"""Perceptual losses of Johnson et al. (ECCV 2016), Section 3.

All images are RGB in [0, 1], NCHW. Losses are computed in float32 even under autocast.

- feature (content) loss: mean squared difference of VGG activations, i.e.
  ``||phi(y_hat) - phi(y)||^2 / (C H W)``, averaged over the batch;
- style loss: for each layer, the squared Frobenius norm of the difference of Gram
  matrices (Grams normalised by C H W), summed over layers, averaged over the batch;
- pixel loss: mean squared difference of pixels;
- total variation: mean squared difference of horizontally plus vertically
  neighbouring pixels (independent of image size);
- grid (SR only, our addition): the power of the part of the error that repeats every
  ``scale`` pixels, a pattern locked to the low-resolution grid.

Default weights per VGG flavour are derived in docs/training.md.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from trainer.vgg import LAYERS

CONTENT_LAYER = "relu2_2"


def _float32(device_type):
    """A context that turns autocast off, so the maths below runs in float32."""
    return torch.autocast(device_type=device_type, enabled=False)


def gram_matrix(features):
    """Gram matrices of an N x C x H x W batch, normalised by C*H*W: N x C x C, float32.

    bf16 features (under bf16 autocast) are multiplied in bf16 with float32 accumulation,
    which halves the cost of the largest Grams; float16 ones are first made float32, since
    their sums would overflow float16's range."""
    n, c, h, w = features.shape
    with _float32(features.device.type):
        f = features.reshape(n, c, h * w)
        if f.dtype != torch.bfloat16:
            f = f.float()
        return torch.bmm(f, f.transpose(1, 2)).float() / (c * h * w)


def feature_loss(features, target_features):
    """Feature reconstruction loss: mean squared difference of two activations."""
    with _float32(features.device.type):
        return F.mse_loss(features.float(), target_features.float())


def style_loss(grams_target, features):
    """Sum over layers of the squared Frobenius norm of Gram differences, batch-averaged.

    ``grams_target``: ``{layer: 1 x C x C or N x C x C}``; ``features``: ``{layer: N x C x H x W}``
    holding at least the layers of ``grams_target``.
    """
    total = 0.0
    for layer, target in grams_target.items():
        gram = gram_matrix(features[layer])
        total = total + (gram - target.to(gram.device)).pow(2).sum(dim=(1, 2)).mean()
    return total


def pixel_loss(image, target):
    """Pixel loss: mean squared difference of two images."""
    with _float32(image.device.type):
        return F.mse_loss(image.float(), target.float())


def tv_loss(image):
    """Total-variation regulariser: mean squared difference of neighbouring pixels."""
    with _float32(image.device.type):
        x = image.float()
        dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean()
        dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean()
        return dx + dy


def phase_patterns(images, period):
    """Each image's pattern repeating every ``period`` pixels: its mean over every ``period`` x
    ``period`` block (anchored at the top-left) at each position in a block, minus the mean of
    those; N x C x period x period for N x C x H x W ``images``. Sides that are not multiples of
    ``period`` lose their last rows/columns. A tensor with gradients, for :func:`grid_loss`; images
    that need no gradient are measured and cleaned in NumPy (:mod:`backend.stride_pattern`)."""
    n, c, height, width = images.shape
    height, width = height - height % period, width - width % period
    blocks = images[:, :, :height, :width].reshape(n, c, height // period, period, width // period, period)
    means = blocks.mean(dim=(2, 4))
    return means - means.mean(dim=(2, 3), keepdim=True)


def grid_loss(image, target, period):
    """The error pattern repeating every ``period`` pixels: the batch's mean
    :func:`phase_patterns` of the error, squared and summed over positions and channels. A fixed
    checkerboard raises it; detail in the wrong place, which differs from block to block, barely
    does."""
    with _float32(image.device.type):
        return phase_patterns(image.float() - target.float(), period).mean(dim=0).pow(2).sum()


@dataclass
class LossWeights:
    """Weights of the terms of the total objective (0 switches a term off)."""

    content: float = 0.0
    style: float = 0.0
    pixel: float = 0.0
    tv: float = 0.0
    grid: float = 0.0

    @classmethod
    def defaults(cls, flavour, loss="style"):
        """Default weights for a VGG ``flavour`` ('caffe'|'torchvision') and ``loss``
        ('style': style transfer, 'feat': SR with feature loss, 'pixel': SR with pixel loss)."""
        if flavour not in DEFAULT_WEIGHTS:
            raise ValueError(f"unknown VGG flavour {flavour!r}; expected one of {sorted(DEFAULT_WEIGHTS)}")
        if loss not in DEFAULT_WEIGHTS[flavour]:
            raise ValueError(f"unknown loss {loss!r}; expected 'style', 'feat' or 'pixel'")
        return cls(**DEFAULT_WEIGHTS[flavour][loss])

    def as_dict(self):
        """The weights by name. ``grid`` (SR only, off by default) is listed only when used, so
        checkpoints written before it existed still resume."""
        weights = asdict(self)
        if not weights["grid"]:
            del weights["grid"]
        return weights


# Caffe features are about 255 times larger than torchvision's (input scale 0..255 vs a
# standardised 0..1): the feature loss scales with its square, the style loss with its
# fourth power. See docs/training.md for the derivation and checks.
_FEATURE_SCALE = 255.0
_CAFFE_STYLE = {"content": 1.0, "style": 3.3e-4, "tv": 2.5e4}
DEFAULT_WEIGHTS = {
    "caffe": {
        "style": _CAFFE_STYLE,
        "feat": {"content": 1.0, "tv": 2.5e4},
        "pixel": {"pixel": 1.0, "tv": 0.0},
    },
    "torchvision": {
        "style": {"content": _CAFFE_STYLE["content"] * _FEATURE_SCALE ** 2,
                  "style": _CAFFE_STYLE["style"] * _FEATURE_SCALE ** 4,
                  "tv": _CAFFE_STYLE["tv"]},
        "feat": {"content": _FEATURE_SCALE ** 2, "tv": 2.5e4},
        "pixel": {"pixel": 1.0, "tv": 0.0},
    },
}


class PerceptualLoss(torch.nn.Module):
    """The total objective: weighted feature, style, pixel and TV losses.

    ``loss_net`` (a :class:`trainer.vgg.LossNetwork`) may be None for a pixel-only loss.
    ``style_image`` (1 x 3 x H x W in [0, 1]) is needed when ``weights.style`` > 0; its
    Grams are computed once here. ``grid_period`` (an SR net's scale) is needed when
    ``weights.grid`` > 0. ``loss(output, target)`` returns ``(total, parts)`` where
    ``parts`` maps each active term to its weighted value (a detached float tensor).
    """

    def __init__(self, loss_net, weights, style_image=None, content_layer=CONTENT_LAYER,
                 style_layers=LAYERS, grid_period=None):
        super().__init__()
        self.loss_net = loss_net
        self.weights = weights
        self.grid_period = grid_period
        if weights.grid and not grid_period:
            raise ValueError("the grid loss needs the period of the grid (the SR scale)")
        self.content_layer = content_layer
        self.style_layers = tuple(style_layers) if weights.style else ()
        self.style_grams = {}
        if loss_net is None and (weights.content or weights.style):
            raise ValueError("feature and style losses need a loss network")
        if weights.style:
            if style_image is None:
                raise ValueError("a style image is needed when the style weight is not zero")
            with torch.no_grad():
                feats = loss_net(style_image, self.style_layers)
                self.style_grams = {name: gram_matrix(f) for name, f in feats.items()}

    def forward(self, output, target, features=None):
        """``features``: the loss network's features of ``output`` at (at least) the layers this
        loss uses, where the caller has them already (one VGG pass for two losses)."""
        parts = self.weighted_terms(output, target, features)
        total = sum(parts.values())
        return total, {name: value.detach() for name, value in parts.items()}

    def weighted_terms(self, output, target, features=None):
        """The weighted terms of ``self(output, target)`` as tensors with their gradients, for a
        caller that weighs them again (``features`` as for ``forward``)."""
        return self._weighted_terms(output, target, style_by_layer=False, feats=features)

    def terms(self, output, target):
        """The weighted terms of ``self(output, target)`` as floats, the style term split by
        VGG layer (``"style relu3_3"``, ...): where an output falls short. Runs without grad."""
        with torch.no_grad():
            parts = self._weighted_terms(output, target, style_by_layer=True)
        return {name: float(value) for name, value in parts.items()}

    def _weighted_terms(self, output, target, style_by_layer, feats=None):
        w = self.weights
        layers = list(self.style_layers)
        if w.content and self.content_layer not in layers:
            layers.append(self.content_layer)
        parts = {}
        if layers:
            if feats is None:
                feats = self.loss_net(output, layers)
            if w.content:
                with torch.no_grad():
                    target_feats = self.loss_net(target, [self.content_layer])
                parts["content"] = w.content * feature_loss(feats[self.content_layer],
                                                            target_feats[self.content_layer])
            if w.style and style_by_layer:
                for layer, gram in self.style_grams.items():
                    parts[f"style {layer}"] = w.style * style_loss({layer: gram}, feats)
            elif w.style:
                parts["style"] = w.style * style_loss(self.style_grams, feats)
        if w.pixel:
            parts["pixel"] = w.pixel * pixel_loss(output, target)
        if w.tv:
            parts["tv"] = w.tv * tv_loss(output)
        if w.grid:
            parts["grid"] = w.grid * grid_loss(output, target, self.grid_period)
        if not parts:
            raise ValueError("all loss weights are zero")
        return parts
