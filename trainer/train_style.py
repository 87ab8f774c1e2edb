"""``brushwork train style``: a feed-forward style transfer net (Johnson et al., Sec. 4.1).

The net learns to minimise feature loss (relu2_2) to the content crop plus style loss
(relu1_2 ... relu4_3) to one style image plus total variation. See docs/training.md.
"""

import warnings
from pathlib import Path


from backend.nets import build_net, default_architecture, edge_hiding_border, style_reach
from trainer.data import CropSampler, find_images, load_image, preview_crops, split_holdout, to_image
from trainer.export import check_model_name, export_model, model_name, sha256_of
from trainer.losses import LossWeights, PerceptualLoss
from trainer.loop import run_training
from trainer.plots import image_grid, run_for_preview
from trainer.vgg import LossNetwork


def loss_weights(args, loss):
    """The flavour's default weights for ``loss``, overridden by any --*-weight option."""
    weights = LossWeights.defaults(args.vgg, loss)
    for term in ("content", "style", "pixel", "tv"):
        value = getattr(args, f"{term}_weight", None)
        if value is not None:
            setattr(weights, term, value)
    return weights


def architecture(args, kind, scale=1):
    arch = default_architecture(kind, scale)
    if args.channels:
        arch["channels"] = args.channels
    if args.blocks:
        arch["blocks"] = args.blocks
    if getattr(args, "border", 0):
        arch["border"] = args.border
    return arch


def augmentation(args):
    """The crop augmentation asked for (``zoom``, ``flip``; CropSampler checks them), listing only
    what is on: runs and checkpoints from before these options existed keep the same configuration."""
    zoom, flip = getattr(args, "zoom", 1.0), getattr(args, "flip", False)
    return {**({"zoom": zoom} if zoom != 1 else {}), **({"flip": True} if flip else {})}


class StyleTask:
    """What style training adds to the shared loop: data, loss, net, preview, export."""

    kind = "style"

    def __init__(self, args, device):
        if not Path(args.style).is_file():
            raise FileNotFoundError(f"style image {args.style} not found")
        self.args = args
        self.name = check_model_name(args.name) if args.name else model_name(Path(args.style).stem)
        self.paths, self.held_out = split_holdout(find_images(args.content), args.holdout, args.holdout_list,
                                                  seed=args.seed)
        self.augment = augmentation(args)
        self.sampler = CropSampler(self.paths, args.size, seed=args.seed, resize=True, **self.augment)
        self.weights = loss_weights(args, "style")
        style = load_image(args.style, max_side=args.style_size).to(device)
        loss_net = LossNetwork(args.vgg, args.vgg_weights).to(device)
        self.loss = PerceptualLoss(loss_net, self.weights, style_image=style)
        self.arch = architecture(args, "style")
        self.net = build_net(self.arch)
        blocks, border = self.arch["blocks"], self.arch.get("border", 0)
        if 0 < border < style_reach(blocks):
            warnings.warn(f"--border {border} is less than the reach of a {blocks}-block net "
                          f"({style_reach(blocks)} px): it can still find the image's edge and paint lines "
                          f"along it; --border {edge_hiding_border(blocks)} hides the edge", stacklevel=2)
        self.preview_inputs = preview_crops(self.paths, args.size)
        self.config = {"kind": "style", "size": args.size, "style_size": args.style_size,
                       "weights": self.weights.as_dict(), "vgg": args.vgg, "architecture": self.arch,
                       "style": str(Path(args.style).resolve()), "content": str(Path(args.content).resolve()),
                       "held_out": [str(p) for p in self.held_out], **self.augment}

    def batch(self, first, count):
        crops = self.sampler.batch(first, count)
        return crops, crops

    def stylise_previews(self, net):
        return run_for_preview(net, self.preview_inputs)

    def preview(self, net):
        return image_grid([list(self.preview_inputs), list(self.stylise_previews(net))])

    def export(self, net, recipe, out_dir):
        args = self.args
        recipe = {**recipe, "size": args.size, "style_size": args.style_size,
                  "loss_weights": self.weights.as_dict(), "vgg": args.vgg, **self.augment,
                  "vgg_weights": str(args.vgg_weights) if args.vgg_weights else None}
        data = {"style_image": str(Path(args.style).resolve()), "style_sha256": sha256_of(args.style),
                "content": str(Path(args.content).resolve()), "content_images": len(self.paths),
                "held_out": [p.name for p in self.held_out]}
        thumbnail = to_image(self.stylise_previews(net)[0])
        return export_model(net, self.name, args.display_name, "style", args.vgg, recipe, data, thumbnail, out_dir)


def run(args):
    """Train and export a style model; return its JSON path (None on DDP ranks > 0)."""
    return run_training(args, StyleTask)
