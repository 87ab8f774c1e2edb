"""``brushwork train sr``: a single-image super-resolution net (Johnson et al., Sec. 4.2).

HR patches are cropped at native resolution; the LR input is made on the fly with the
paper's degradation (Gaussian blur sigma 1.0, then bicubic downsampling). The loss is the
feature loss at relu2_2 (``--loss feat``, optionally with pixel and grid terms) or the pixel
loss (``--loss pixel``), plus an optional total-variation term. ``--holdout`` keeps
evaluation images out of training.
"""

from pathlib import Path

import torch.nn.functional as F

from backend.nets import build_net
from trainer.data import CropSampler, degrade, find_images, preview_crops, split_holdout, to_image
from trainer.export import check_model_name, export_model
from trainer.losses import LossWeights, PerceptualLoss
from trainer.loop import run_training
from trainer.plots import image_grid, run_for_preview
from trainer.train_style import architecture
from trainer.vgg import LossNetwork


def sr_loss_weights(args):
    """The objective's weights: ``--loss``'s defaults, then any weight given on the command line.

    ``--pixel-weight`` with ``--loss feat`` adds a pixel term to the feature loss (not in the
    paper): it pins colours and the patterns the feature loss cannot see. ``--grid-weight``
    penalises a pattern repeating every ``scale`` pixels (:func:`trainer.losses.grid_loss`)."""
    weights = LossWeights.defaults(args.vgg, args.loss)
    if args.content_weight is not None:
        if args.loss != "feat":
            raise ValueError("--content-weight is the feature loss weight: it needs --loss feat")
        weights.content = args.content_weight
    if args.pixel_weight is not None:
        weights.pixel = args.pixel_weight
    if args.tv_weight is not None:
        weights.tv = args.tv_weight
    if args.grid_weight is not None:
        weights.grid = args.grid_weight
    return weights


def degradation_text(sigma):
    """How the LR training inputs were made, for the model's recipe."""
    if sigma > 0:
        return f"gaussian blur sigma {sigma:g}, bicubic"
    return "antialiased bicubic"


class SRTask:
    """What SR training adds to the shared loop: degraded batches, loss, net, preview, export."""

    kind = "sr"

    def __init__(self, args, device):
        if args.size % args.scale:
            raise ValueError(f"--size {args.size} must be divisible by --scale {args.scale}")
        if args.blur < 0:
            raise ValueError("--blur must be 0 or more")
        self.args = args
        self.name = check_model_name(args.name or f"sr_x{args.scale}_{args.loss}")
        paths = find_images(args.data)
        self.paths, self.held_out = split_holdout(paths, args.holdout, args.holdout_list, seed=args.seed)
        self.sampler = CropSampler(self.paths, args.size, seed=args.seed, resize=False)
        self.weights = sr_loss_weights(args)
        loss_net = LossNetwork(args.vgg, args.vgg_weights).to(device) if self.weights.content else None
        self.loss = PerceptualLoss(loss_net, self.weights, grid_period=args.scale)
        self.net = build_net({**architecture(args, "sr", args.scale), "residual": args.residual,
                              "upsample": args.upsample})
        self.arch = self.net.architecture()   # the form save_model records, defaults left out
        self.preview_hr = preview_crops(self.held_out or self.paths, args.size, resize=False)
        self.config = {"kind": "sr", "scale": args.scale, "loss": args.loss, "size": args.size, "blur": args.blur,
                       "weights": self.weights.as_dict(), "vgg": args.vgg if loss_net else None,
                       "architecture": self.arch, "data": str(Path(args.data).resolve()),
                       "held_out": [str(p) for p in self.held_out]}

    def batch(self, first, count):
        hr = self.sampler.batch(first, count)
        return degrade(hr, self.args.scale, self.args.blur), hr

    def upscale_previews(self, net):
        return run_for_preview(net, degrade(self.preview_hr, self.args.scale, self.args.blur))

    def preview(self, net):
        """Rows: bicubic upscaling of the LR input, the net's output, the HR original."""
        low = degrade(self.preview_hr, self.args.scale, self.args.blur)
        bicubic = F.interpolate(low, scale_factor=self.args.scale, mode="bicubic", align_corners=False)
        return image_grid([list(bicubic.clamp(0, 1)), list(self.upscale_previews(net)), list(self.preview_hr)])

    def export(self, net, recipe, out_dir):
        args = self.args
        recipe = {**recipe, "size": args.size, "scale": args.scale, "degradation": degradation_text(args.blur),
                  "loss_weights": self.weights.as_dict(), "vgg": self.config["vgg"],
                  "vgg_weights": str(args.vgg_weights) if args.vgg_weights else None}
        data = {"images": str(Path(args.data).resolve()), "training_images": len(self.paths),
                "held_out": [p.name for p in self.held_out]}
        thumbnail = to_image(self.upscale_previews(net)[0])
        return export_model(net, self.name, args.display_name, args.loss, self.config["vgg"], recipe, data,
                            thumbnail, out_dir)


def run(args):
    """Train and export an SR model; return its JSON path (None on DDP ranks > 0)."""
    return run_training(args, SRTask)
