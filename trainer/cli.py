"""The trainer's command line: ``train style``, ``train sr``, ``eval ...`` and the hooks for
``brushwork stylize --optimize``. ``backend/cli.py`` calls :func:`register`;
``python -m trainer`` runs :func:`main` on its own (the editor training job uses that).
"""

import argparse
import importlib
import shlex
import sys
import warnings
from pathlib import Path

EXIT_ERROR = 1
EXIT_CANCELLED = 130


def _train_command(module_name):
    """An argparse ``func`` running ``trainer.<module_name>.run`` with friendly errors."""
    def command(args):
        module = importlib.import_module(f"trainer.{module_name}")
        program = "python -m trainer" if Path(sys.argv[0]).name == "__main__.py" else Path(sys.argv[0]).name
        args.command_line = f"{program} {shlex.join(sys.argv[1:])}"
        warnings.simplefilter("default")  # one line per unreadable image, without the source line
        warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
        try:
            module.run(args)
        except (ValueError, OSError) as exc:
            print(f"brushwork train: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("brushwork train: interrupted; continue with --resume", file=sys.stderr)
            return EXIT_CANCELLED
        return 0
    return command


def register(subparsers):
    """Add ``train`` (style, sr) and ``eval`` (when trainer.evaluate exists) to ``subparsers``."""
    from trainer import train_sr, train_style

    train = subparsers.add_parser("train", help="train a style or super-resolution model",
                                  description="Train feed-forward nets with perceptual losses "
                                              "(see docs/training.md).")
    kinds = train.add_subparsers(dest="train_kind", metavar="{style,sr}", required=True)
    style = kinds.add_parser("style", help="train a style transfer model from one style image",
                             description=train_style.__doc__)
    train_style.add_arguments(style)
    style.set_defaults(func=_train_command("train_style"))
    sr = kinds.add_parser("sr", help="train a super-resolution model",
                          description=train_sr.__doc__)
    train_sr.add_arguments(sr)
    sr.set_defaults(func=_train_command("train_sr"))

    try:
        from trainer import evaluate
    except ImportError:
        return
    ev = subparsers.add_parser("eval", help="evaluate models (PSNR/SSIM, style comparisons)")
    evaluate.register(ev.add_subparsers(dest="eval_kind", required=True))


def add_optimize_arguments(parser):
    """Add the Gatys et al. optimisation options to ``brushwork stylize`` (if available)."""
    try:
        from trainer import gatys
    except ImportError:
        return
    gatys.add_arguments(parser)


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
