"""The frozen VGG-16 loss network of Johnson et al. (conv1_1 ... relu4_3).

:class:`LossNetwork` takes RGB images in [0, 1] (NCHW) and applies the preprocessing
its weights were trained with, so callers never deal with channel orders or means:

- ``"caffe"``: the original VGG-16 weights the paper used: BGR, 0..255, minus the
  ImageNet mean (B 103.939, G 116.779, R 123.68), no division by a standard deviation.
- ``"torchvision"``: torchvision's ``IMAGENET1K_V1`` weights: RGB, 0..1,
  ``(x - mean) / std`` with torchvision's ImageNet mean and std.
"""

import os
from pathlib import Path

import torch
from torch import nn

from trainer.options import VGG_FLAVOURS as FLAVOURS

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

# Index of each named ReLU in torchvision's ``vgg16().features`` (same keys in our weights).
LAYER_INDEX = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}

# conv1_1 ... conv4_3: output channels, "M" = 2x2 max pool (torchvision's configuration "D").
_VGG16_TO_CONV4_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)

DEFAULT_WEIGHTS_NAME = "vgg16_caffe_relu4_3.pth"


def vgg16_features():
    """An untrained ``nn.Sequential`` laid out like torchvision's ``vgg16().features[:23]``."""
    layers, in_ch = [], 3
    for item in _VGG16_TO_CONV4_3:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, item, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = item
    return nn.Sequential(*layers)


def default_weights_path():
    """Where to look for the Caffe VGG-16 weights when none are given.

    ``$BRUSHWORK_VGG_WEIGHTS``, else ``$BRUSHWORK_SHARED/weights/``, else the project's
    ``../shared/weights/`` (development checkouts). Returns a Path (which may not exist).
    """
    if os.environ.get("BRUSHWORK_VGG_WEIGHTS"):
        return Path(os.environ["BRUSHWORK_VGG_WEIGHTS"])
    shared = os.environ.get("BRUSHWORK_SHARED")
    shared = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return shared / "weights" / DEFAULT_WEIGHTS_NAME


def _load_state_dict(path):
    """Read VGG weights saved as a plain state dict (no code execution: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG-16 weights not found at {path}; pass --vgg-weights PATH "
            f"(Caffe VGG-16 conv1_1..conv4_3 state dict) or use --vgg torchvision")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    # Accept a whole torchvision vgg16 state dict too ("features.0.weight", "classifier...").
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state


def _torchvision_state_dict():
    """torchvision's ImageNet VGG-16 (downloaded to the torch hub cache on first use)."""
    from torchvision.models import VGG16_Weights, vgg16
    return vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features[:23].state_dict()


class LossNetwork(nn.Module):
    """Frozen VGG-16 up to relu4_3 returning named activations.

    ``LossNetwork("caffe", weights=None)`` loads :func:`default_weights_path`;
    ``LossNetwork("torchvision", weights=None)`` loads torchvision's IMAGENET1K_V1
    (a download on first use). ``weights`` may be a path to a state dict for either flavour.
    """

    def __init__(self, flavour="caffe", weights=None):
        super().__init__()
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown VGG flavour {flavour!r}; expected one of {FLAVOURS}")
        self.flavour = flavour
        self.features = vgg16_features()
        if weights is not None:
            state = _load_state_dict(weights)
        elif flavour == "caffe":
            state = _load_state_dict(default_weights_path())
        else:
            state = _torchvision_state_dict()
        missing = set(self.features.state_dict()) - set(state)
        if missing:
            raise ValueError(f"VGG weights lack layers {sorted(missing)[:4]}... (need conv1_1..conv4_3)")
        self.features.load_state_dict({k: state[k] for k in self.features.state_dict()})
        if flavour == "caffe":
            mean, std, scale = CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), 255.0
        else:
            mean, std, scale = TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB, 1.0
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.scale = scale
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """The loss network always stays in eval mode."""
        return super().train(False)

    def preprocess(self, rgb):
        """RGB [0, 1] NCHW -> the input tensor these VGG weights expect."""
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"expected an RGB batch N x 3 x H x W, got shape {tuple(rgb.shape)}")
        x = rgb.flip(1) if self.flavour == "caffe" else rgb
        return (x * self.scale - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, rgb, layers=LAYERS):
        """Return ``{name: activation}`` for the requested ``layers`` (subset of LAYERS)."""
        unknown = [name for name in layers if name not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG layers {unknown}; choose from {LAYERS}")
        wanted = {LAYER_INDEX[name]: name for name in layers}
        last = max(wanted)
        x = self.preprocess(rgb)
        out = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
            if index == last:
                break
        return out
