"""The trainer's command line: ``train style``, ``train sr``, ``train distill``, ``eval ...`` and the hooks for
``brushwork stylize --optimize``. ``backend/cli/__init__.py`` calls :func:`register`;
``python -m trainer`` runs :func:`main` on its own (the editor training job uses that).
"""

import argparse
import importlib
import json
import shlex
import sys
import warnings
from pathlib import Path

from backend.protocol import EXIT_CANCELLED, EXIT_ERROR, BadRequest, IOFailure
from trainer import options


def _train_command(module_name):
    """An argparse ``func`` running ``trainer.<module_name>.run`` with friendly errors."""
    def command(args):
        module = importlib.import_module(f"trainer.{module_name}")
        program = "python -m trainer" if Path(sys.argv[0]).name == "__main__.py" else Path(sys.argv[0]).name
        args.command_line = f"{program} {shlex.join(sys.argv[1:])}"
        warnings.simplefilter("default")  # one line per unreadable image, without the source line
        warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
        try:
            json_path = module.run(args)
        except (ValueError, OSError) as exc:
            print(f"brushwork train: error: {exc}", file=sys.stderr)
            if getattr(args, "progress_json", False):   # the daemon passes the code on to its client
                code = IOFailure.code if isinstance(exc, OSError) else BadRequest.code
                print(json.dumps({"event": "error", "code": code, "message": str(exc)}), flush=True)
            return EXIT_ERROR
        except KeyboardInterrupt as exc:
            why = f" ({exc})" if str(exc) and not str(exc).startswith("signal") else ""
            print(f"brushwork train: interrupted{why}; continue with --resume", file=sys.stderr)
            return EXIT_CANCELLED
        if json_path is not None:
            print(training_summary(json_path), file=sys.stderr if args.progress_json else sys.stdout)
        return 0
    return command


def training_summary(json_path):
    """Where a trained model went, how long it trained, whether it finished, and how to use it."""
    import json

    from backend.model_store import user_models_dir
    from backend.protocol import describe_duration

    metadata = json.loads(Path(json_path).read_text(encoding="utf-8"))
    name, recipe = metadata["name"], metadata["recipe"]
    lines = [f"saved the {metadata['kind']} model {name!r} to {json_path}",
             f"trained {recipe['iterations']:,} iterations in {describe_duration(recipe['wall_time_s'])} "
             f"on {recipe['hardware']}"]
    planned = recipe.get("planned_iterations")
    if planned:
        why = "by --time-limit" if recipe.get("stopped_by_time_limit") else "early"
        lines.append(f"stopped {why} at {recipe['iterations']:,} of {planned:,} iterations: the model is partly "
                     "trained (`brushwork models` marks it); to train on, run the same command with --resume")
    models = "" if Path(json_path).parent.resolve() == user_models_dir().resolve() else \
        f" --models {shlex.quote(str(Path(json_path).parent))}"
    if metadata["kind"] == "style":
        lines.append(f"use it: brushwork stylize photo.jpg --style {name}{models} -o out.png")
    else:
        lines.append(f"use it: brushwork upscale photo.jpg --scale {metadata['scale']} --model {name}{models} "
                     "-o big.png")
    if not models:
        lines.append("a running brushwork daemon serves it already, and the editors list it")
    return "\n".join(lines)


def _eval_command(function_name):
    """An argparse ``func`` running ``trainer.evaluate.<function_name>`` with one-line errors."""
    def command(args):
        from backend.protocol import BrushworkError
        from trainer import evaluate
        try:
            return getattr(evaluate, function_name)(args)
        except (ValueError, OSError, BrushworkError) as exc:
            print(f"brushwork eval: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("brushwork eval: interrupted", file=sys.stderr)
            return EXIT_CANCELLED
    return command


def register(subparsers):
    """Add ``train`` (style, sr, distill) and ``eval`` (sr, style) to ``subparsers``. Nothing heavy is
    imported here: each command imports its module when it runs."""
    train = subparsers.add_parser("train", help="train a style or super-resolution model",
                                  description="Train feed-forward nets with perceptual losses "
                                              "(see docs/training.md).")
    kinds = train.add_subparsers(dest="train_kind", metavar="{style,sr,distill}", required=True)
    style = kinds.add_parser("style", help="train a style transfer model from one style image",
                             description="Train a feed-forward style transfer net (Johnson et al., Sec. 4.1): "
                                         "feature loss to the content crop, style loss to one style image, "
                                         "total variation.")
    options.add_train_style_arguments(style)
    style.set_defaults(func=_train_command("train_style"))
    sr = kinds.add_parser("sr", help="train a super-resolution model",
                          description="Train a single-image super-resolution net (Johnson et al., Sec. 4.2) "
                                      "on HR patches degraded on the fly, with the feature or the pixel loss.")
    options.add_train_sr_arguments(sr)
    sr.set_defaults(func=_train_command("train_sr"))

    distill = kinds.add_parser("distill", help="train a smaller, faster copy of a style model (a lite net)",
                               description="Distil a style model: a smaller net learns to reproduce what the "
                                           "teacher makes of cached, augmented crops (L1, a grid term against 4-px "
                                           "patterns and VGG texture terms; the teacher runs once, so it fits "
                                           "on a CPU). See docs/models.md.")
    options.add_train_distill_arguments(distill)
    distill.set_defaults(func=_train_command("distill"))

    evaluations = subparsers.add_parser("eval", help="evaluate models (PSNR/SSIM, style comparisons)")
    kinds = evaluations.add_subparsers(dest="eval_kind", required=True)
    ev = kinds.add_parser("sr", help="PSNR/SSIM of a super-resolution model against bicubic (Set5/Set14 protocol)",
                          description="PSNR/SSIM on Y of an SR model and of bicubic upsampling (standard "
                                      "benchmark protocol); prints and writes a Markdown table and a crop grid "
                                      "per data set.")
    options.add_eval_sr_arguments(ev)
    ev.set_defaults(func=_eval_command("run_sr"))
    ev = kinds.add_parser("style", help="style objective of a model vs the L-BFGS baseline (paper's Fig. 5)",
                          description="The objective of a style model, of the content images and of the "
                                      "L-BFGS baseline (the paper's Figure 5); prints and writes a Markdown "
                                      "table and a plot.")
    options.add_eval_style_arguments(ev)
    ev.set_defaults(func=_eval_command("run_style"))


def add_optimize_arguments(parser):
    """Add the Gatys et al. optimisation options to ``brushwork stylize``."""
    options.add_optimize_arguments(parser)


def run_optimize(args):
    """Run ``brushwork stylize --optimize`` (Gatys et al. baseline)."""
    from trainer import gatys
    return gatys.run(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m trainer",
                                     description="brushwork trainer: train and evaluate models.")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv=None):
    """Entry point of ``python -m trainer``; returns the exit status."""
    args = build_parser().parse_args(argv)
    result = args.func(args)
    return result if isinstance(result, int) else 0
