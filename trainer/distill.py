"""``brushwork train distill``: a smaller, faster style net trained to reproduce a style model.

The *teacher* (a bundled or user style model) stylises a pool of augmented training crops once,
the way the engine runs it for users (line-free: see :mod:`trainer.distill_targets`) but in
float32 whatever the device (a bf16 CPU's output would teach its rounding); the
*student*, a :class:`backend.nets.StyleNet` of less width and depth, learns to reproduce those
images. No gradient through the teacher: without the Gram term each step costs only the student's
forward and backward, which is what makes distilling fit on a CPU. See docs/models.md,
"Lite nets".

Loss (:class:`DistillLoss`): L1 to the teacher's output (its period-4 pattern replaced crop by
crop by the photo's: :mod:`trainer.distill_targets`), a grid term on the pattern the student's
own error repeats every 4 px, and (``--gram-weight``) a Gram term: the student's VGG texture statistics against the teacher's on
the same crop, the style the L1 term leaves soft (it costs a VGG pass each step), and
(``--feature-weight``) a feature term: the student's VGG features at the content layer against
the teacher's, which holds the strokes where the teacher put them, and (``--objective-weight``)
the teacher's own Eq. 5 of the student's output, with (``--content-weight``) more weight on its
content term.
The shared loop (:func:`trainer.loop.run_training`) does Adam, checkpoints, ``--resume``,
progress, previews and the loss curve.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.nets import build_net
from backend.protocol import LITE_SUFFIX, BrushworkError
from trainer.data import CropSampler, find_images, preview_crops, split_holdout, to_image
from trainer.distill_targets import PERIOD, build_targets, pattern_rms_levels
from trainer.export import check_model_name, export_model
from trainer.gatys import model_objective, model_vgg
from trainer.checkpoint import default_run_dir
from trainer.loop import run_training
from trainer.losses import CONTENT_LAYER, feature_loss, gram_matrix, grid_loss, style_loss
from trainer.plots import image_grid, run_for_preview
from trainer.vgg import LAYERS, LossNetwork

STUDENT = {"channels": 8, "blocks": 8}      # chosen by timing and by distillations: docs/lite_nets_log.md
# Pixels along each side of a crop that the VGG terms do not see: the student's edges are taught
# by the L1 term alone, from line-free targets. Seen through VGG's zero padding, the outermost
# lines could buy texture statistics, and step 2 grew lines along the edges (docs/lite_nets_log.md).
VGG_MARGIN = 8


def find_teacher(store, name):
    """The ModelInfo of style model ``name`` in ``store``; ValueError naming the style models if there is none."""
    try:
        info = store.get(name)
    except BrushworkError:
        info = None
    if info is None or info.kind != "style":
        styles = ", ".join(m.name for m in store.list() if m.kind == "style") or "none installed"
        what = "there is no model of that name" if info is None else f"it is an {info.kind} model"
        raise ValueError(f"--teacher {name!r}: {what}; a teacher is a style model ({styles})")
    return info


def student_name(args):
    """The student's model name: ``--name``, or the teacher's with :data:`backend.protocol.LITE_SUFFIX`."""
    return check_model_name(args.name or f"{args.teacher}{LITE_SUFFIX}")


def student_architecture(args):
    """The student's architecture: :data:`STUDENT`, or ``--channels`` / ``--blocks`` / ``--widths``. No
    mirrored border: it learns line-free edges from the teacher's targets, so it is exported to run
    plain (``"mirror_edges": false``), which at 1024² spares it a quarter of its pixels."""
    widths = getattr(args, "widths", None)
    channels = widths[0] if widths else args.channels or STUDENT["channels"]
    return {"type": "style", "channels": channels, "blocks": args.blocks or STUDENT["blocks"],
            **({"widths": list(widths)} if widths else {})}


def counting_targets(stylise, count):
    """``stylise`` that also prints a ``{"event": "targets", "done", "total"}`` JSON line per crop
    (``--progress-json``: the daemon shows how far the teacher's targets are; ``done`` counts the
    crops made by this process)."""
    made = 0

    def stylise_counted(image):
        nonlocal made
        output = stylise(image)
        made += 1
        print(json.dumps({"event": "targets", "done": made, "total": count}), flush=True)
        return output
    return stylise_counted


class DistillLoss(torch.nn.Module):
    """``l1`` x mean absolute difference to the target + ``grid`` x :func:`trainer.losses.grid_loss`
    at period 4 (the error pattern fixed to the stride grid) + ``gram`` x the style loss of the
    output's VGG features against the Grams of the target's (:func:`trainer.losses.style_loss`,
    the teacher's style layers) + ``feature`` x the mean squared difference of the output's and
    the target's VGG features at the content layer (relu2_2) + ``objective`` x the teacher's own
    Eq. 5 (``teacher_objective``, a :class:`trainer.losses.PerceptualLoss` on ``loss_net``) of the
    output for the photo + ``content`` x that objective's content term alone (the photo's
    structure weighed above the teacher's balance). ``loss_net``, a
    :class:`trainer.vgg.LossNetwork`, is needed when ``gram``, ``feature``, ``objective`` or
    ``content`` is on; the output's and the target's features are computed once for all of them,
    on the crop less ``margin`` pixels along each side (:data:`VGG_MARGIN`). ``loss(output, target)`` returns
    ``(total, parts)`` as the loop expects; ``target`` is the teacher's output, followed on the
    channels by the photo (N x 6 x H x W) when the objective term is on."""

    def __init__(self, l1=1.0, grid=10.0, gram=0.0, feature=0.0, objective=0.0, content=0.0, loss_net=None,
                 teacher_objective=None, margin=VGG_MARGIN):
        super().__init__()
        self.margin = margin
        weights = {"l1": l1, "grid": grid, "gram": gram, "feature": feature, "objective": objective,
                   "content": content}
        if min(weights.values()) < 0 or not any(weights.values()):
            raise ValueError("--l1-weight, --grid-weight, --gram-weight, --feature-weight, --objective-weight "
                             "and --content-weight must not be negative, nor all 0")
        if (gram or feature or objective or content) and loss_net is None:
            raise ValueError("the Gram, feature, objective and content terms need a loss network")
        if (objective or content) and teacher_objective is None:
            raise ValueError("the objective and content terms need the teacher's objective")
        self.weights = {name: w for name, w in weights.items() if w or name in ("l1", "grid")}
        self.loss_net = loss_net if gram or feature or objective or content else None
        self.teacher_objective = teacher_objective if objective or content else None

    def forward(self, output, target):
        target, photo = target[:, :3], target[:, 3:]
        parts = {}
        height, width = output.shape[-2:]
        seen = (..., slice(self.margin, height - self.margin), slice(self.margin, width - self.margin))
        if self.loss_net is not None:
            features = self.loss_net(output[seen], LAYERS)
        if self.weights.get("gram") or self.weights.get("feature"):
            with torch.no_grad():     # the teacher's output's features
                taught = self.loss_net(target[seen], LAYERS if self.weights.get("gram") else [CONTENT_LAYER])
        if self.weights.get("gram"):
            grams = {layer: gram_matrix(f) for layer, f in taught.items()}
            parts["gram"] = self.weights["gram"] * style_loss(grams, features)
        if self.weights.get("feature"):
            parts["feature"] = self.weights["feature"] * feature_loss(features[CONTENT_LAYER], taught[CONTENT_LAYER])
        if self.teacher_objective is not None:
            terms = self.teacher_objective.weighted_terms(output[seen], photo[seen], features)
            if self.weights.get("objective"):
                parts["objective"] = self.weights["objective"] * sum(terms.values())
            if self.weights.get("content"):
                parts["content"] = self.weights["content"] * terms["content"]
        output, target = output.float(), target.float()
        if self.weights["l1"]:
            parts["l1"] = self.weights["l1"] * F.l1_loss(output, target)
        if self.weights["grid"]:
            parts["grid"] = self.weights["grid"] * grid_loss(output, target, PERIOD)
        return sum(parts.values()), {name: value.detach() for name, value in parts.items()}


class DistillTask:
    """What distillation adds to the shared loop: the teacher's targets, the student, the loss,
    previews (photo / teacher / student) and the export as a lite net of the teacher."""

    kind = "style"

    def __init__(self, args, device):
        from backend.engine import Engine
        from backend.model_store import ModelStore

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("train distill runs in one process: its ranks would all make the same targets")
        if getattr(args, "estimate", False):
            raise ValueError("train distill has no --estimate: its first step makes the teacher's targets")
        if args.pool < args.batch:
            raise ValueError(f"--pool must be at least --batch ({args.batch})")
        if args.size < 32 or args.size % PERIOD:
            raise ValueError(f"--size must be a multiple of {PERIOD} and at least 32")
        self.args = args
        store = ModelStore(args.models or ())
        self.teacher = find_teacher(store, args.teacher)
        self.name = student_name(args)
        if self.name == self.teacher.name:
            raise ValueError(f"--name {self.name!r} is the teacher's: the student would replace it")
        engine = Engine(store, device=str(device), precision="fp32")    # targets in float32 on any device

        def stylise(image):
            return engine.stylize(image, None, self.teacher.name)[0]

        teacher_held_out = self.teacher.metadata.get("data", {}).get("held_out", [])
        photos, self.held_out = split_holdout(find_images(args.content), args.holdout, args.holdout_list, args.seed)
        self.paths = [p for p in photos if p.name not in teacher_held_out]   # the teacher never saw those either
        self.held_out += [p for p in photos if p.name in teacher_held_out]
        if not self.paths:
            raise ValueError("every content photo is held out (by the options or by the teacher's metadata)")
        self.augment = {"zoom": args.zoom, "flip": not args.no_flip}
        sampler = CropSampler(self.paths, args.size, seed=args.seed, resize=True, **self.augment)
        identity = {"teacher": self.teacher.name, "teacher_sha256": self.teacher.metadata["sha256"],
                    "size": args.size, "count": args.pool, "seed": args.seed, **self.augment,
                    "photos": [p.name for p in self.paths]}
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(self.name)
        making = counting_targets(stylise, args.pool) if args.progress_json else stylise
        targets_dir = getattr(args, "targets_dir", None) or run_dir / "targets"    # the recipe's parts share one
        self.pool, self.targets_seconds = build_targets(targets_dir, identity, sampler, making, args.pool)
        self._order = (None, None)     # (epoch, its permutation of the pool)
        loss_net = objective = None
        if args.objective_weight or args.content_weight:     # the teacher's Eq. 5, on its own loss network
            objective, _ = model_objective(self.teacher.metadata, device, args.style_image)
            loss_net = objective.loss_net
        elif args.gram_weight or args.feature_weight:    # the teacher's loss network: its VGG flavour and weights
            flavour, vgg_weights = model_vgg(self.teacher.metadata)
            loss_net = LossNetwork(flavour, weights=vgg_weights).to(device)
        self.loss = DistillLoss(args.l1_weight, args.grid_weight, args.gram_weight, args.feature_weight,
                                args.objective_weight, args.content_weight, loss_net, objective)
        self.net = build_net(student_architecture(args))
        self.arch = self.net.architecture()      # widths left out where they are the paper's
        self.preview_inputs = preview_crops(self.paths, args.size)
        self.preview_teacher = torch.stack([torch.from_numpy(stylise(x.permute(1, 2, 0).numpy().copy()))
                                            .permute(2, 0, 1) for x in self.preview_inputs])
        self.config = {"kind": "distill", "teacher": self.teacher.name,
                       "teacher_sha256": self.teacher.metadata["sha256"], "size": args.size, "pool": args.pool,
                       **self.augment, "weights": self.loss.weights, "vgg_margin": self.loss.margin,
                       "architecture": self.arch,
                       "content": str(Path(args.content).resolve()), "held_out": [str(p) for p in self.held_out]}

    def batch(self, first, count):
        """Pool crops for samples ``first`` ... ``first + count - 1``: each epoch a seeded permutation of
        the pool. The targets carry the photos too when the loss has the objective term."""
        indices = []
        for number in range(first, first + count):
            epoch, position = divmod(number, self.pool.count)
            if self._order[0] != epoch:
                self._order = (epoch, np.random.default_rng([self.args.seed, epoch]).permutation(self.pool.count))
            indices.append(int(self._order[1][position]))
        photos, targets = self.pool.pairs(indices)
        return photos, torch.cat([targets, photos], dim=1) if self.loss.teacher_objective else targets

    def stylise_previews(self, net):
        return run_for_preview(net, self.preview_inputs)

    def preview(self, net):
        """Rows: the photos, the teacher's output, the student's."""
        return image_grid([list(self.preview_inputs), list(self.preview_teacher), list(self.stylise_previews(net))])

    def export(self, net, recipe, out_dir):
        """Save the student as a style model marked ``"teacher": <name>``, run plain
        (:func:`student_architecture`). Its recipe carries the
        teacher's loss weights, VGG and style image, so ``brushwork eval style`` measures it on
        the teacher's objective (Eq. 5)."""
        args, teacher = self.args, self.teacher.metadata
        taught = teacher.get("recipe", {})
        recipe = {**recipe, "teacher": self.teacher.name, "teacher_sha256": teacher["sha256"],
                  "teacher_architecture": teacher["architecture"], "size": args.size, "pool": args.pool,
                  **self.augment, "distill_weights": self.loss.weights, "vgg_margin": self.loss.margin,
                  "targets_wall_time_s": round(self.targets_seconds, 1),
                  "teacher_fixed_pattern_rms_levels": round(pattern_rms_levels(self.pool.fixed_pattern), 2),
                  **({"teacher_blown_patches_filled": self.pool.blown_patches_filled}
                     if self.pool.blown_patches_filled is not None else {}),
                  **{key: taught[key] for key in ("loss_weights", "style_size", "vgg", "vgg_weights") if key in taught}}
        sources = teacher.get("data", {})
        data = {"content": str(Path(args.content).resolve()), "content_images": len(self.paths),
                "held_out": [p.name for p in self.held_out],
                **{key: sources[key] for key in ("style_image", "style_sha256") if key in sources}}
        display = args.display_name or f"{self.teacher.display_name} (lite)"
        thumbnail = to_image(self.stylise_previews(net)[0])
        return export_model(net, self.name, display, "style", teacher.get("vgg"), recipe, data, thumbnail, out_dir,
                            extra={"teacher": self.teacher.name, "mirror_edges": False})


def run(args):
    """Distil and export a lite style model, in one run (``--recipe single``) or in the parts of
    :mod:`trainer.distill_recipe`; return its JSON path."""
    if getattr(args, "recipe", "single") == "single":
        return run_training(args, DistillTask)
    from trainer import distill_recipe
    return distill_recipe.run(args, lambda part: run_training(part, DistillTask))
