"""``train distill --recipe two-step``: the bundled lite nets' recipe, as parts that each start from the last.

Step 1 teaches the teacher's pictures pixel by pixel (the L1 and grid terms, no VGG pass: fast);
step 2 adds the VGG terms (the Gram term, the teacher's objective and its content term once more)
at a lower learning rate, in warm-restarted parts, each with a fresh Adam: the schedule that
measured best on the 2-core CPU (docs/models.md, "Lite nets"). Step 3 continues on crops twice as
large (half the batch) with the VGG terms three times heavier, which the nets' Eq. 5 at 512² needs.
Every part is an ordinary ``train distill`` run in ``RUN_DIR/<part>``; the parts at ``--size`` share
the teacher's targets in ``RUN_DIR/targets``, step 3 has its own in ``RUN_DIR/targets_x2``. Each
exports the student to ``RUN_DIR/<part>/model`` and the next starts from that model
(``--init``), so the final model's recipe holds the whole chain; the last is installed into ``--out``.
With ``--progress-json`` (the daemon's jobs) each part's lines follow a ``{"event": "part", "name",
"number", "parts"}`` line, and a last ``done`` line names the installed model.
"""

import argparse
import copy
import json
import time
from pathlib import Path

from backend.model_save import write_atomic
from backend.model_store import user_models_dir
from trainer import options
from trainer.checkpoint import checkpoint_path, default_run_dir, latest_checkpoint
from trainer.distill import student_name
from trainer.progress import emit_json

STEP_2 = {"lr": 3e-4, "lr_final": 1e-5, "grid_weight": 200.0, "gram_weight": 3e-10, "objective_weight": 3e-6,
          "content_weight": 3e-6}
PARTS = (
    ("step1", {"iterations": 2000, "lr": 2e-3, "warmup": 50, "lr_final": 1e-5, "grid_weight": 50.0,
               "gram_weight": 0.0}),
    ("step2a", {**STEP_2, "iterations": 800, "warmup": 20}),
    *((f"step2{letter}", {**STEP_2, "iterations": 400, "warmup": 10}) for letter in "bcde"),
    ("step3", {**STEP_2, "iterations": 600, "warmup": 10, "gram_weight": 1e-9, "objective_weight": 1e-5,
               "content_weight": 1e-5, "crop_scale": 2}),
)
SET_BY_RECIPE = sorted({key for _, settings in PARTS for key in settings} - {"crop_scale"} | {"init", "estimate"})


def _defaults():
    parser = argparse.ArgumentParser()
    options.add_train_distill_arguments(parser)
    return parser.parse_args(["--teacher", "-", "--content", "-"])


def _check(args):
    defaults = _defaults()
    given = [name for name in SET_BY_RECIPE if getattr(args, name, None) != getattr(defaults, name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"--recipe two-step sets the schedule and the loss weights of each of its parts: leave out "
                         f"{flags}, or give --recipe single")


def _finished(part, json_path):
    """Whether ``part`` ran all its iterations and exported ``json_path``."""
    return json_path.is_file() and latest_checkpoint(part.run_dir) == checkpoint_path(part.run_dir, part.iterations)


def _install(json_path, out_dir):
    """Copy the model of ``json_path`` (weights, thumbnail, JSON last) into ``out_dir``; return its new JSON path."""
    json_path, out_dir = Path(json_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = json.loads(json_path.read_text(encoding="utf-8"))["weights"]
    for source in (json_path.parent / weights, json_path.with_suffix(".png"), json_path):
        if source.is_file():
            write_atomic(out_dir / source.name, source.read_bytes())
    return out_dir / json_path.name


def run(args, run_part):
    """Run the recipe's parts with ``run_part(part_args)`` (:func:`trainer.loop.run_training` on a
    :class:`trainer.distill.DistillTask`) and install the last part's model into ``--out``; return
    its JSON path. With ``--resume`` finished parts are skipped and an unfinished one continues;
    ``--time-limit`` bounds the whole, and a part stopped by it ends the recipe there."""
    _check(args)
    name = student_name(args)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(name)
    deadline = time.monotonic() + args.time_limit if args.time_limit else None
    json_path = None
    for number, (part_name, settings) in enumerate(PARTS, 1):
        settings = dict(settings)
        scale = settings.pop("crop_scale", 1)     # crops `scale` times larger, batches as many times smaller
        part = copy.copy(args)
        vars(part).update(settings, run_dir=run_dir / part_name, out=run_dir / part_name / "model",
                          size=args.size * scale, batch=max(1, args.batch // scale),
                          targets_dir=run_dir / ("targets" if scale == 1 else f"targets_x{scale}"),
                          init=json_path and str(json_path))
        if getattr(args, "command_line", None):
            part.command_line = f"{args.command_line}  # part {part_name}, {number} of {len(PARTS)}"
        exported = part.out / f"{name}.json"
        if args.resume and _finished(part, exported):
            json_path = exported
            continue
        part.resume = "latest" if args.resume and latest_checkpoint(part.run_dir) else None
        if deadline is not None:
            part.time_limit = deadline - time.monotonic()
            if part.time_limit <= 0:
                break
        if args.progress_json:
            emit_json({"event": "part", "name": part_name, "number": number, "parts": len(PARTS)})
        else:
            print(f"part {part_name} ({number} of {len(PARTS)}): {settings['iterations']:,} iterations on "
                  f"{part.size}² crops", flush=True)
        json_path = run_part(part)
        recipe = json.loads(Path(json_path).read_text(encoding="utf-8"))["recipe"]
        if recipe.get("stopped_by_time_limit") or recipe.get("stopped_early"):
            break
    if json_path is None:
        raise ValueError("--time-limit ran out before the first part could start")
    installed = _install(json_path, args.out if args.out is not None else user_models_dir())
    if args.progress_json:
        emit_json({"event": "done", "model": name, "path": str(installed)})
    return installed
