"""Lines along the image edge in the style nets' output, and what a mirrored border costs.

For each bundled style model, three ways to run it:
- ``plain``: the net on the image, as the engine runs it;
- ``mirrored``: the image mirrored ``--border`` pixels out on every side, the net's output
  cropped back (instance norm then also sees the mirrored pixels);
- ``mirrored, own stats``: the same, with every instance norm using the statistics of the
  part that is the image.
It prints the worst side's edge ratio (the step from the outermost row or column to the next,
over the mean of the 8 steps after it; about 1 when the edge looks like what lies inside it)
on the three shared content photos (384 px), and the mean objective (Eq. 5) on held-out photos.
``--lbfgs N`` adds, per held-out photo, the edge ratio of the plain net's output and of the
Gatys baseline after N L-BFGS iterations from noise (does the objective itself want lines?).

    .venv/bin/python benchmarks/bench_edges.py [--border 32] [--held 4] [--size 256] [--lbfgs 100]
"""

import argparse
import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.model_store import ModelStore  # noqa: E402
from backend.nets import mirror_pad  # noqa: E402
from trainer.data import find_images, split_holdout  # noqa: E402
from trainer.evaluate import _model_objective, square_content  # noqa: E402
from trainer.gatys import optimize  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
HOLDOUT = ROOT / "trainer" / "recipes" / "sun_hays80_holdout.txt"


class OwnStatsNorm(torch.nn.Module):
    """Instance norm whose statistics come from the input less ``border / side`` of each side."""

    def __init__(self, norm, border, side):
        super().__init__()
        self.norm, self.fraction = norm, border / side

    def forward(self, x):
        b = round(self.fraction * x.shape[-1])
        inner = x[..., b:x.shape[-2] - b, b:x.shape[-1] - b]
        mean, var = inner.mean((0, 2, 3)), inner.var((0, 2, 3), unbiased=False)
        return F.batch_norm(x, mean, var, self.norm.weight, self.norm.bias, False, 0.0, self.norm.eps)


def run(net, x, border, own_stats):
    """``net`` on the 1x3xHxW image ``x``: plain (border 0) or mirrored and cropped back."""
    if not border:
        return net(x)
    padded = mirror_pad(x, border)
    if own_stats:
        net = copy.deepcopy(net)
        for module in list(net.modules()):
            for name, child in module.named_children():
                if isinstance(child, torch.nn.InstanceNorm2d):
                    setattr(module, name, OwnStatsNorm(child, border, padded.shape[-1]))
    return net(padded)[..., border:-border, border:-border]


def edge_ratio(image, depth=8):
    """The worst side's step from the outermost line to the next over the mean of the next ``depth``."""
    ratios = []
    for lines in (image, image.flip(1), image.transpose(1, 2), image.transpose(1, 2).flip(1)):
        steps = (lines[:, 1:depth + 2] - lines[:, :depth + 1]).abs().mean((0, 2))
        ratios.append(float(steps[0] / steps[1:].mean()))
    return max(ratios)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--border", type=int, default=32, help="mirrored pixels on each side (default 32)")
    parser.add_argument("--held", type=int, default=4, help="held-out photos for the objective (default 4)")
    parser.add_argument("--size", type=int, default=256, help="their square size (default 256)")
    parser.add_argument("--lbfgs", type=int, default=0, metavar="N",
                        help="also compare edge ratios with L-BFGS after N iterations on the held-out photos")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    store = ModelStore(include_user=False)
    photos = []
    for name in ("amber", "chicago", "hoovertowernight"):
        image = Image.open(SHARED / "content" / f"{name}.jpg").convert("RGB")
        image.thumbnail((384, 384))
        photos.append(torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None])
    _, held = split_holdout(find_images(SHARED / "train" / "sun_hays80"), holdout_list=HOLDOUT)
    held = [square_content(path, args.size) for path in held[:args.held]]
    ways = {"plain": (0, False), "mirrored": (args.border, False), "mirrored, own stats": (args.border, True)}
    print(f"edge ratio: worst side, max over 3 photos; objective: mean over {len(held)} held-out photos at "
          f"{args.size} px; border {args.border}")
    print(f"{'model':16s} " + " | ".join(f"{way:>28s}" for way in ways))
    for info in store.list():
        if info.kind != "style":
            continue
        net = store.load(info).float()
        objective, _ = _model_objective(info.metadata, SimpleNamespace(style_image=None, style_size=None,
                                                                      vgg_weights=None), "cpu")
        cells = []
        for border, own in ways.values():
            ratio = max(edge_ratio(run(net, x, border, own).clamp(0, 1)[0]) for x in photos)
            value = np.mean([float(objective(run(net, c, border, own).clamp(0, 1), c)[0]) for c in held])
            cells.append(f"edge {ratio:4.2f}, objective {value:.4g}")
        print(f"{info.name:16s} " + " | ".join(f"{c:>28s}" for c in cells))
        if args.lbfgs:
            nets = " ".join(f"{edge_ratio(net(c).clamp(0, 1)[0]):.2f}" for c in held)
            with torch.enable_grad():
                optimised = [optimize(c, objective, args.lbfgs)[0] for c in held]
            lbfgs = " ".join(f"{edge_ratio(image[0]):.2f}" for image in optimised)
            print(f"{'':16s} edge ratio on each held-out photo: net {nets}; L-BFGS {args.lbfgs}: {lbfgs}")


if __name__ == "__main__":
    main()
