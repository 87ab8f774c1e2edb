"""The ``brushwork`` command: run the daemon, list models, stylize and upscale image files.

Each command is a module here with its options (``register``) and its run (``cmd_*``): ``serve``,
``models``, ``keys``, ``images`` (stylize, upscale), ``plugins``; the trainer adds its own
(``train``, ``eval``, ``stylize --optimize``) when it is installed. ``stylize``, ``upscale`` and
``models`` talk to the local daemon when one answers and otherwise run the same job function in
this process (``--local`` forces that), saying on stderr which; a daemon named by ``--endpoint``,
``BRUSHWORK_ENDPOINT`` or keys must answer. Heavy modules (torch, the engine, the trainer, the
plug-in installers) are imported only when used.
"""

import argparse
import sys

from backend import __version__, protocol
from backend.cli import images, keys, models, plugins, serve
from backend.cli.shared import trainer_cli
from backend.protocol import EXIT_CANCELLED, EXIT_ERROR, EXIT_USAGE, BrushworkError


def build_parser():
    """The ``brushwork`` argument parser, with every command's options."""
    parser = argparse.ArgumentParser(prog="brushwork", description="Fast neural style transfer and "
                                     "super-resolution (Johnson et al., ECCV 2016) for Krita and GIMP.")
    parser.add_argument("--version", action="version", version=f"brushwork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (serve, models, keys, images, plugins):
        command.register(sub)
    hooks = trainer_cli()
    if hooks is not None:
        hooks.register(sub)
    return parser


def main(argv=None):
    """Run the ``brushwork`` command line; return the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        status = args.func(args)
        return status if isinstance(status, int) else 0   # some commands return their results
    except BrushworkError as exc:
        if exc.code == protocol.Cancelled.code:
            print("brushwork: cancelled", file=sys.stderr)
            return EXIT_CANCELLED
        print(f"brushwork: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("brushwork: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
