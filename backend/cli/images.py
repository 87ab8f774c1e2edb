"""``brushwork stylize`` and ``upscale``: image files through the daemon, or in this process.

A daemon that answers runs the jobs (``DaemonRunner``, through the client); otherwise, or with
``--local``, this process runs the daemon's own job function on an Engine (``LocalRunner``).
"""

import glob
import os
import signal
import sys
from pathlib import Path

import numpy as np

from backend import image_io, protocol
from backend.cli.shared import (add_daemon_arguments, add_engine_arguments, daemon_client, endpoint_named, make_engine,
                                make_store, trainer_cli)
from backend.daemon.jobs import run_image_job

# Which bundled model each scale uses, and why (ModelStore.find_sr; measured in docs/models.md).
SR_DEFAULTS = ("x2 sr_x2_pixel; x4 sr_x4_pixel: sr_x4_feat has crisper edges but paints a fine crosshatch on flat "
               "areas; x8 sr_x8_feat, the only x8 model (faint bands, no crosshatch; docs/models.md)")


def register(sub):
    """Add the ``stylize`` and ``upscale`` commands to the subcommands ``sub``."""
    p = sub.add_parser("stylize", help="apply a style model to image files",
                       description="Apply a style model to image files (via the daemon when one runs).")
    _add_file_arguments(p)
    p.add_argument("--style", metavar="NAME", help="style model name (see `brushwork models`)")
    p.add_argument("--strength", type=float, default=1.0, help="0 = original, 1 = full style (default: 1)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the input's colours, take only luminance")
    p.add_argument("--draft", action="store_true",
                   help="run the style's lite net instead: several times faster, a little less faithful (make "
                        "one with `brushwork train distill --teacher NAME`; outputs are named STEM-NAME-draft)")
    hooks = trainer_cli()
    if hooks is not None:
        hooks.add_optimize_arguments(p)
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("upscale", help="super-resolve image files",
                       description="Upscale image files with a super-resolution model.")
    _add_file_arguments(p)
    p.add_argument("--scale", type=int, choices=protocol.SR_SCALES,
                   help="upscaling factor (default: the --model's, else 4); a --model of another scale is refused")
    p.add_argument("--model", metavar="NAME",
                   help="SR model (default: the first pixel-loss model for the scale, else the first by name; "
                        f"bundled: {SR_DEFAULTS})")
    p.add_argument("--histogram-match", action="store_true", help="match the output's colour histogram to the input")
    p.set_defaults(func=cmd_upscale)


def _add_file_arguments(p):
    """The options both commands share: inputs, outputs, mask, which daemon, and the engine's."""
    p.add_argument("inputs", nargs="+", metavar="IN", help="input image files or glob patterns")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input only; type from its extension)")
    out.add_argument("--out-dir", metavar="DIR", help="directory for the outputs (default: beside each input)")
    p.add_argument("--mask", metavar="PNG", help="selection mask image (white = apply), same size as the input")
    add_daemon_arguments(p)
    p.add_argument("--local", action="store_true", help="run in this process even if a daemon is running")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say whether the daemon or this process runs the job, also with --quiet or --local")
    add_engine_arguments(p, note="; in-process runs only, a daemon uses its own settings (with --models or "
                                 "--no-bundled the job runs in this process)")


class CancelOnSignal:
    """While active, Ctrl-C / SIGTERM set ``requested`` (a second Ctrl-C aborts at once)."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self):
        return self.requested


def _expand_inputs(patterns):
    """The input files named by ``patterns`` (globs expanded); each must be a file."""
    paths = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches:
                raise protocol.BadRequest(f"no files match {pattern!r}")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(pattern))
    for path in paths:
        if path.is_dir():
            raise protocol.BadRequest(f"{path} is a folder; give image files, e.g. '{path / '*.jpg'}'")
        if not path.is_file():
            raise protocol.BadRequest(f"{path}: no such file")
    return paths


def _output_paths(args, inputs, tag):
    """Where each input's result goes: -o, --out-dir or beside it, named ``STEM-TAG.EXT``; never over an input."""
    if args.output and len(inputs) > 1:
        raise protocol.BadRequest("-o/--output names one file; use --out-dir for several inputs")
    if args.output:
        outputs = [Path(args.output)]
    else:
        directory = Path(args.out_dir) if args.out_dir else None
        outputs = [(directory or p.parent) / f"{p.stem}-{tag}{p.suffix}" for p in inputs]
    for src, dst in zip(inputs, outputs):
        if dst.resolve() == src.resolve():
            raise protocol.BadRequest(f"output {dst} would overwrite its input")
        image_io.check_writable(dst)
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    return outputs


class DaemonRunner:
    """Runs jobs on a daemon through the client."""

    def __init__(self, client):
        self.client = client

    def __call__(self, kind, array, fmt, mask, options, progress, cancel):
        height, width = array.shape[:2]
        call = self.client.stylize if kind == "stylize" else self.client.upscale
        if kind == "upscale" and options["scale"] is None:   # a named model's own scale
            options = dict(options, scale=self._model_scale(options["model"]))
        result = call(array, width, height, fmt, mask=mask, progress=progress, should_cancel=cancel, **options)
        return np.frombuffer(result.pixels, array.dtype).reshape(result.height, result.width, array.shape[2])

    def models(self):
        """The daemon's models, as its ``info`` reply lists them."""
        return self.client.info().get("models", [])

    def _model_scale(self, name):
        for model in self.client.info().get("models", []):
            if model["name"] == name:
                return model["scale"]
        return 4   # the daemon answers that the model is missing


class LocalRunner:
    """Runs jobs on an Engine in this process, through the daemon's own job function."""

    def __init__(self, engine):
        self.engine = engine

    def __call__(self, kind, array, fmt, mask, options, progress, cancel):
        height, width = array.shape[:2]
        return run_image_job(self.engine, kind, array, width, height, fmt, mask, options,
                             lambda done, total: progress(done, total, ""), cancel)

    def models(self):
        """The installed models, as a daemon's ``info`` reply would list them."""
        return [summary for _, summary in self.engine.store.summaries()]


def _runner(args):
    """(runner, what it is): a DaemonRunner when a daemon answers (and neither --local nor a choice of
    models, --models / --no-bundled, is given), else a LocalRunner; see
    :func:`~backend.cli.shared.daemon_client`. A daemon serves its own models, so choosing models
    and naming a daemon is an error."""
    own_models = bool(args.models or args.no_bundled)
    if own_models and not args.local and endpoint_named(args):
        raise protocol.BadRequest("--models and --no-bundled choose the models of this process, and a daemon serves "
                                  "its own (`brushwork serve --models DIR`): add --local to run them here, or leave "
                                  "these options out to use the daemon's")
    client = None if args.local or own_models else daemon_client(args)
    if client is not None:
        return DaemonRunner(client), f"using the daemon at {client.endpoint}"
    engine = make_engine(args, make_store(args))
    where = f"using the in-process engine on {engine.device}"
    if not args.local:
        where += (" (--models / --no-bundled: the models of this process, not a daemon's)" if own_models else
                  f" (no daemon answers at {protocol.default_endpoint()}; `brushwork serve` keeps the models "
                  "loaded between runs)")
    return LocalRunner(engine), where


def progress_text(done, total, message):
    """What the progress bar shows: the tile count, or before the first tile the daemon's message
    (e.g. "waiting, 1 job ahead")."""
    return f"tile {done}/{total}" if total else message


def _process_files(args, kind, options, tag):
    """Run a ``kind`` job with ``options`` on each input file; outputs are named with ``tag``."""
    from tqdm import tqdm

    inputs = _expand_inputs(args.inputs)
    outputs = _output_paths(args, inputs, tag)
    runner, where = _runner(args)
    if args.verbose or not (args.quiet or args.local):
        print(f"brushwork: {where}", file=sys.stderr)
    if getattr(args, "draft", False):
        options = dict(options, model=_draft_model(runner, options["model"], args.quiet))
    # disable=None: no bar unless stderr is a terminal; leave=False: an error message starts on a clean line
    with CancelOnSignal() as cancel, tqdm(total=len(inputs), unit="image", disable=True if args.quiet else None,
                                          leave=False) as bar:
        for src, dst in zip(inputs, outputs):
            bar.set_description(src.name)
            array, fmt = image_io.read_image(src)
            height, width = array.shape[:2]
            mask = image_io.read_mask(args.mask, width, height) if args.mask else None

            def progress(done, total, message):
                bar.set_postfix_str(progress_text(done, total, message))

            result = runner(kind, array, fmt, mask, options, progress, cancel)
            image_io.write_image(dst, result)
            bar.update(1)
    return 0


def _draft_model(runner, style, quiet):
    """The lite net a ``--draft`` of ``style`` runs (see :func:`backend.protocol.draft_model`), said on stderr."""
    model = protocol.draft_model(runner.models(), style)
    if not quiet:
        of = "" if model == style else f", the lite version of {style}"
        print(f"brushwork: draft: running {model}{of}", file=sys.stderr)
    return model


def cmd_stylize(args):
    """Apply a style model to image files (or, with --optimize, run the Gatys baseline)."""
    if getattr(args, "optimize", False):
        return trainer_cli().run_optimize(args)
    if not args.style:
        raise protocol.BadRequest("stylize needs --style NAME (see `brushwork models`)")
    strength = protocol.check_strength(args.strength, "--strength")
    options = {"model": args.style, "strength": strength, "preserve_colors": args.preserve_colors}
    return _process_files(args, "stylize", options, f"{args.style}-draft" if args.draft else args.style)


def cmd_upscale(args):
    """Super-resolve image files."""
    scale = args.scale if args.scale or args.model else 4
    options = {"model": args.model, "scale": scale, "histogram_match": args.histogram_match}
    return _process_files(args, "upscale", options, f"x{scale}" if scale else args.model)
