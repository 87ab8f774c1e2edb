"""``brushwork models``: the models (and device) of the daemon that answers, else the installed models."""

import os
import sys

from backend import protocol
from backend.cli.shared import add_daemon_arguments, daemon_client, make_store


def register(sub):
    """Add the ``models`` command to the subcommands ``sub``."""
    p = sub.add_parser("models", help="list the models a running daemon serves, or the installed ones",
                       description="List the models (and device) of the daemon that answers, else the models "
                                   "found in the model directories, and problems with model files.")
    p.add_argument("--models", action="append", metavar="DIR",
                   help="extra model directory (repeatable; lists the installed models, not the daemon's)")
    p.add_argument("--local", action="store_true", help="list the installed models even if a daemon is running")
    add_daemon_arguments(p, timeout=10.0)
    p.set_defaults(func=cmd_models)


def cmd_models(args):
    """List the answering daemon's models, else the installed ones, and problems with model files."""
    client = None if args.local or args.models else daemon_client(args)
    if client is not None:
        with client:
            info = client.info()
        print(f"daemon at {client.endpoint}: brushwork {info.get('version')}, device {info.get('device')}, "
              f"precision {info.get('precision')}")
        rows = [(m["name"], m["kind"], f"x{m['scale']}", m["display_name"], _trained(m), _lite(m),
                 os.path.dirname(m["path"]) or "(remote)") for m in info.get("models", [])]
        if info.get("left_out"):
            print(f"the daemon left out {info['left_out']}")
        return _print_models(rows, info.get("problems", []), "the daemon has no models")
    if not args.local and not args.models:
        print(f"brushwork: no daemon answers at {protocol.default_endpoint()}; listing the installed models",
              file=sys.stderr)
    store = make_store(args)
    rows = [(m.name, m.kind, f"x{m.scale}", m.display_name, _trained(summary), _lite(summary), str(m.json_path.parent))
            for m, summary in store.summaries()]
    return _print_models(rows, store.problems, "no models installed; searched: " + ", ".join(map(str, store.dirs)))


def _trained(summary):
    """The TRAINED column: iterations, and a mark on a partly trained model (its run stopped early)."""
    iterations, planned = summary.get("iterations"), summary.get("planned_iterations")
    text = "?" if iterations is None else f"{iterations:,} it."
    if summary.get("partly_trained"):
        own = summary.get("recipe", {}).get("iterations")
        text += f" PARTLY TRAINED ({own:,} of {planned:,})" if planned and isinstance(own, int) else " PARTLY TRAINED"
    return text


def _lite(summary):
    """The LITE column: which style a lite net is the lite version of, or a style's lite net
    (what `brushwork stylize --draft` runs)."""
    notes = []
    if summary.get("teacher"):
        notes.append(f"lite version of {summary['teacher']}")
    if summary.get("lite"):
        notes.append(f"draft: {summary['lite']}")
    return "; ".join(notes) or "-"


def _print_models(rows, problems, empty_message):
    if rows:
        titles = ("NAME", "KIND", "SCALE", "DISPLAY NAME", "TRAINED", "LITE", "DIRECTORY")
        widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(len(titles))]
        for row in [titles, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    else:
        print(empty_message)
    for problem in problems:
        print(f"problem: {problem}")
    return 0
