"""The ``brushwork`` command: run the daemon, list models, stylize and upscale image files.

``stylize``, ``upscale`` and ``models`` talk to the local daemon when one answers and otherwise
run the same Engine in this process (``--local`` forces that), saying on stderr which; a daemon
named by ``--endpoint``, ``BRUSHWORK_ENDPOINT`` or keys must answer. Heavy modules (torch, the
engine, the trainer, the plug-in installers) are imported only when used.
"""

import argparse
import glob
import logging
import os
import signal
import shlex
import sys
from pathlib import Path

import numpy as np

from backend import __version__, image_io, protocol
from backend.protocol import BrushworkError

EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130
# Which bundled model each scale uses, and why (ModelStore.find_sr; measured in docs/models.md).
SR_DEFAULTS = ("x2 sr_x2_pixel; x4 sr_x4_pixel: sr_x4_feat has crisper edges but paints a fine crosshatch on flat "
               "areas; x8 sr_x8_feat, the only x8 model (faint bands, no crosshatch; docs/models.md)")


# ---- helpers ----------------------------------------------------------------------------

def _trainer_cli():
    """The trainer's CLI hooks, or None while the trainer is not installed."""
    try:
        import trainer.cli
    except ImportError:
        return None
    return trainer.cli


def _make_store(args):
    from backend.model_store import ModelStore
    return ModelStore(args.models or (), include_bundled=not getattr(args, "no_bundled", False))


def _make_engine(args, store):
    from backend.engine import Engine
    return Engine(store, device=args.device, precision=args.precision, tile_size=args.tile_size)


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


# ---- serve ------------------------------------------------------------------------------

def _serve_endpoint(args):
    from backend.daemon.server import tcp_endpoint
    if args.tcp is not None:
        return tcp_endpoint(args.tcp)
    return args.endpoint or protocol.default_endpoint()


def _serve_auth(args, endpoint):
    """The daemon's ServerAuth: for any endpoint given --server-key/--allow, and always for a
    non-loopback one (with the default key files); None for a local daemon without keys."""
    from backend.daemon import auth
    from backend.daemon.server import is_loopback

    if args.server_key is None and args.allow is None and is_loopback(endpoint):
        return None
    keys_dir = auth.user_keys_dir()
    secret = Path(args.server_key or auth.secret_key_file(keys_dir, auth.SERVER_KEY_NAME)).expanduser()
    if not args.server_key and not secret.exists():
        why = ("--allow needs" if is_loopback(endpoint)
               else f"listening on {endpoint} lets other machines in, so it needs")
        raise BrushworkError(f"{why} keys, and there is no server key at {secret}: run `brushwork keys server`, allow "
                             "each client with `brushwork keys allow CLIENT.key` (see docs/security.md), or listen on "
                             "a loopback address", "bad_request")
    return auth.ServerAuth(secret, args.allow or keys_dir / auth.ALLOWED_DIR_NAME)


def cmd_serve(args):
    from backend.model_store import user_models_dir
    import zmq

    from backend.daemon.connections import raise_descriptor_limit
    from backend.daemon.server import Daemon, check_endpoint, refuse_if_running

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    endpoint = _serve_endpoint(args)
    auth = _serve_auth(args, endpoint)
    check_endpoint(endpoint, authenticated=auth is not None)  # these before the slow engine start
    refuse_if_running(zmq.Context.instance(), endpoint)
    train_out = Path(args.train_out).expanduser() if args.train_out else user_models_dir()
    if args.train_out and train_out not in [Path(d).expanduser() for d in args.models or ()]:
        args.models = [*(args.models or ()), str(train_out)]  # serve what it trains
    store = _make_store(args)
    engine = _make_engine(args, store)
    training = {"content_dir": args.content, "out_dir": train_out, "limit": args.train_jobs,
                "defaults": {"iterations": args.train_iterations}}
    raise_descriptor_limit()   # each connection takes a file descriptor
    daemon = Daemon(engine, store, endpoint, max_pixels=args.max_pixels, max_bytes=args.max_bytes,
                    queue=args.queue, training=training, auth=auth)
    models = store.list()   # the first scan, before the socket exists
    daemon.bind()
    print(f"brushwork {__version__} daemon listening on {endpoint}", flush=True)
    if auth is None and endpoint.startswith("tcp://"):
        print(f"warning: {endpoint} without keys lets every user of this machine use this daemon; the default "
              "IPC socket, or --server-key and --allow, keep it yours (docs/security.md)", flush=True)
    if auth is not None:
        print(f"CURVE authentication on: server public key {auth.public_key.decode()}, "
              f"{len(auth.allow_list.keys())} allowed client key(s) in {auth.allow_list.path}", flush=True)
    print(f"device {engine.device}, precision {engine.precision}", flush=True)
    if models:
        print("models: " + ", ".join(f"{m.name} ({m.kind}{'' if m.kind == 'style' else f' x{m.scale}'})"
                                     for m in models), flush=True)
    else:
        print("no models installed: train one with `brushwork train style ...`, or put a model's .safetensors "
              f"and .json files into {user_models_dir()}", flush=True)
    for problem in store.problems:
        print(f"skipped model {problem}", flush=True)
    print(_training_status(args.content, train_out, endpoint), flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: daemon.stop())
    daemon.serve()
    print("brushwork daemon stopped", flush=True)
    return 0


def _training_status(content_dir, out_dir, endpoint):
    """A line about train_style requests: the content photos and where models go, or what is missing."""
    try:
        from trainer.data import find_images
        from trainer.vgg import default_weights_path
    except ImportError:
        return "training from the editors is unavailable: the trainer is not installed"
    if not content_dir and endpoint.startswith("ipc://"):
        return ("training from the editors: on a folder of photos the artist chooses there (or give `--content "
                f"DIR` or set BRUSHWORK_CONTENT for one of this daemon's own); new models go to {out_dir}")
    if not content_dir:
        return ("training from the editors is off: a daemon on TCP reads no folders its clients name; give "
                "`--content DIR` (or set BRUSHWORK_CONTENT) naming a folder of photos to train on")
    try:
        count = len(find_images(content_dir))
    except (OSError, ValueError) as exc:
        return f"training from the editors will fail until --content is fixed: {exc}"
    line = f"training from the editors: {count} content photos in {content_dir}; new models go to {out_dir}"
    weights = default_weights_path()
    if not weights.is_file():
        line += f"\nwarning: VGG-16 weights not found at {weights}; set BRUSHWORK_VGG_WEIGHTS to train"
    return line


# ---- models -----------------------------------------------------------------------------

def cmd_models(args):
    client = None if args.local or args.models else _daemon_client(args)
    if client is not None:
        with client:
            info = client.info()
        print(f"daemon at {client.endpoint}: brushwork {info.get('version')}, device {info.get('device')}, "
              f"precision {info.get('precision')}")
        rows = [(m["name"], m["kind"], f"x{m['scale']}", m["display_name"], _trained(m), os.path.dirname(m["path"]) or "(remote)")
                for m in info.get("models", [])]
        if info.get("left_out"):
            print(f"the daemon left out {info['left_out']}")
        return _print_models(rows, info.get("problems", []), "the daemon has no models")
    if not args.local and not args.models:
        print(f"brushwork: no daemon answers at {protocol.default_endpoint()}; listing the installed models",
              file=sys.stderr)
    store = _make_store(args)
    rows = [(m.name, m.kind, f"x{m.scale}", m.display_name, _trained(m.summary()), str(m.json_path.parent))
            for m in store.list()]
    return _print_models(rows, store.problems, "no models installed; searched: " + ", ".join(map(str, store.dirs)))


def _trained(summary):
    """The TRAINED column: iterations, and a mark on a partly trained model (its run stopped early)."""
    iterations, planned = summary.get("iterations"), summary.get("planned_iterations")
    text = "?" if iterations is None else f"{iterations:,} it."
    if summary.get("partly_trained"):
        own = summary.get("recipe", {}).get("iterations")
        text += f" PARTLY TRAINED ({own:,} of {planned:,})" if planned and isinstance(own, int) else " PARTLY TRAINED"
    return text


def _print_models(rows, problems, empty_message):
    if rows:
        titles = ("NAME", "KIND", "SCALE", "DISPLAY NAME", "TRAINED", "DIRECTORY")
        widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(len(titles))]
        for row in [titles, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    else:
        print(empty_message)
    for problem in problems:
        print(f"problem: {problem}")
    return 0


# ---- keys -------------------------------------------------------------------------------

def cmd_keys(args):
    from backend.daemon import auth
    keys_dir = Path(args.dir).expanduser() if args.dir else auth.user_keys_dir()
    allowed_dir = keys_dir / auth.ALLOWED_DIR_NAME
    if args.keys_command == "server":
        public, secret = auth.create_key_pair(keys_dir, auth.SERVER_KEY_NAME, force=args.force)
        allowed_dir.mkdir(mode=0o700, exist_ok=True)
        print(f"wrote the server's secret key {secret} (mode 0600: it never leaves this machine)")
        print(f"wrote the server's public key {public}")
        print(f"next: copy {public} to every client machine; on each client run `brushwork keys client NAME`; "
              f"copy its NAME.key here and run `brushwork keys allow NAME.key`; then `brushwork serve --tcp "
              f"0.0.0.0:{protocol.DEFAULT_TCP_PORT}`")
    elif args.keys_command == "client":
        public, secret = auth.create_key_pair(keys_dir, args.name, force=args.force)
        print(f"wrote the secret key of client {args.name!r}: {secret} (mode 0600: it never leaves this machine)")
        print(f"wrote its public key {public}")
        print(f"next: copy {public} to the server and run `brushwork keys allow {public.name}` there; here, give "
              f"the plug-in (or --server-key/--client-key) the server's server.key and {secret}")
    elif args.keys_command == "allow":
        target = auth.allow_client(args.public_key, allowed_dir)
        print(f"allowed: {target} (a running daemon with this allow-list accepts the client from now on)")
    else:
        target = auth.revoke_client(args.name, allowed_dir)
        print(f"revoked: removed {target} (new connections with that key are refused; restart the daemon to "
              "cut one that is open)")
    return 0


# ---- stylize / upscale ------------------------------------------------------------------

def _expand_inputs(patterns):
    paths = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches:
                raise BrushworkError(f"no files match {pattern!r}", "bad_request")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(pattern))
    for path in paths:
        if path.is_dir():
            raise BrushworkError(f"{path} is a folder; give image files, e.g. '{path / '*.jpg'}'", "bad_request")
        if not path.is_file():
            raise BrushworkError(f"{path}: no such file", "bad_request")
    return paths


def _output_paths(args, inputs, tag):
    if args.output and len(inputs) > 1:
        raise BrushworkError("-o/--output names one file; use --out-dir for several inputs", "bad_request")
    if args.output:
        outputs = [Path(args.output)]
    else:
        directory = Path(args.out_dir) if args.out_dir else None
        outputs = [(directory or p.parent) / f"{p.stem}-{tag}{p.suffix}" for p in inputs]
    for src, dst in zip(inputs, outputs):
        if dst.resolve() == src.resolve():
            raise BrushworkError(f"output {dst} would overwrite its input", "bad_request")
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

    def _model_scale(self, name):
        for model in self.client.info().get("models", []):
            if model["name"] == name:
                return model["scale"]
        return 4   # the daemon answers that the model is missing


class LocalRunner:
    """Runs jobs on an Engine in this process."""

    def __init__(self, engine):
        self.engine = engine

    def __call__(self, kind, array, fmt, mask, options, progress, cancel):
        from backend import pixels
        height, width = array.shape[:2]
        rgb, alpha = pixels.decode(array, width, height, fmt)
        mask = pixels.decode_mask(mask, width, height) if mask is not None else None
        run = self.engine.stylize if kind == "stylize" else self.engine.upscale
        rgb, alpha = run(rgb, alpha, mask=mask, progress=lambda done, total: progress(done, total, ""),
                         is_cancelled=cancel, **options)
        return pixels.encode(rgb, alpha, fmt)


def _client(args, timeout):
    from backend.client import Client
    return Client(args.endpoint, timeout=timeout, server_key=args.server_key, client_key=args.client_key)


def _endpoint_named(args):
    """True when the user named a daemon: --endpoint, $BRUSHWORK_ENDPOINT or CURVE keys."""
    return bool(args.endpoint or os.environ.get("BRUSHWORK_ENDPOINT") or args.server_key or args.client_key)


def _daemon_client(args):
    """A Client of the daemon that answered a short ping, or None when the default local daemon does
    not answer. A daemon the user named that does not answer is an error (Unavailable)."""
    named = _endpoint_named(args)
    client = _client(args, 5.0 if args.server_key or args.client_key else 1.0)
    try:
        client.ping()
    except protocol.Unavailable as exc:
        client.close()
        if named:
            raise protocol.Unavailable(f"{exc.message}; or run without --endpoint and $BRUSHWORK_ENDPOINT, or "
                                       "with --local, to use this process") from None
        return None
    client.timeout = args.timeout
    return client


def _runner(args):
    """(runner, what it is): a DaemonRunner when a daemon answers (and --local is not given), else a
    LocalRunner; see :func:`_daemon_client`."""
    client = None if args.local else _daemon_client(args)
    if client is not None:
        return DaemonRunner(client), f"using the daemon at {client.endpoint}"
    engine = _make_engine(args, _make_store(args))
    where = f"using the in-process engine on {engine.device}"
    if not args.local:
        where += (f" (no daemon answers at {protocol.default_endpoint()}; `brushwork serve` keeps the models "
                  "loaded between runs)")
    return LocalRunner(engine), where


def progress_text(done, total, message):
    """What the progress bar shows: the tile count, or before the first tile the daemon's message
    (e.g. "waiting, 1 job ahead")."""
    return f"tile {done}/{total}" if total else message


def _process_files(args, kind, options, tag):
    from tqdm import tqdm

    inputs = _expand_inputs(args.inputs)
    outputs = _output_paths(args, inputs, tag)
    runner, where = _runner(args)
    if args.verbose or not (args.quiet or args.local):
        print(f"brushwork: {where}", file=sys.stderr)
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


def cmd_stylize(args):
    if getattr(args, "optimize", False):
        return _trainer_cli().run_optimize(args)
    if not args.style:
        raise BrushworkError("stylize needs --style NAME (see `brushwork models`)", "bad_request")
    if not 0.0 <= args.strength <= 1.0:
        raise BrushworkError(f"--strength must be between 0 and 1, got {args.strength}", "bad_request")
    options = {"model": args.style, "strength": args.strength, "preserve_colors": args.preserve_colors}
    return _process_files(args, "stylize", options, args.style)


def cmd_upscale(args):
    scale = args.scale if args.scale or args.model else 4
    options = {"model": args.model, "scale": scale, "histogram_match": args.histogram_match}
    return _process_files(args, "upscale", options, f"x{scale}" if scale else args.model)


# ---- plug-ins ---------------------------------------------------------------------------

def _installer(editor):
    try:
        if editor == "krita":
            from plugin_krita import installer
        else:
            from plugin_gimp import installer
    except ImportError as exc:
        raise BrushworkError(f"the {editor} plug-in is not part of this installation ({exc})", "internal") from None
    return installer


def cmd_install_plugin(args):
    installer = _installer(args.editor)
    try:
        options = {"python": shlex.split(args.python)} if args.python else {}
        if options and args.editor != "gimp":
            raise BrushworkError("--python applies to GIMP only (the Krita installer finds Krita's Python itself)",
                                 "bad_request")
        if args.krita_root:
            if args.editor != "krita":
                raise BrushworkError("--krita-root applies to Krita only", "bad_request")
            options["krita_root"] = args.krita_root
        print(installer.install(uninstall=args.uninstall, home=args.home, **options))
    except (RuntimeError, OSError) as exc:  # the installers explain what to do in the message
        raise BrushworkError(str(exc), "internal") from None
    return 0


def cmd_package_plugin(args):
    installer = _installer(args.editor)
    try:
        print(installer.package(args.output))
    except (RuntimeError, OSError) as exc:
        raise BrushworkError(str(exc), "internal") from None
    return 0


# ---- argument parsing -------------------------------------------------------------------

def _add_engine_arguments(p, note=""):
    p.add_argument("--models", action="append", metavar="DIR",
                   help="extra model directory (repeatable; later ones override earlier ones by name)" + note)
    p.add_argument("--no-bundled", action="store_true",
                   help="leave out the models that come with brushwork (serve only yours)" + note)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)" + note)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="compute precision (default: auto)" + note)
    p.add_argument("--tile-size", type=int, metavar="PX",
                   help="tile size in pixels; style images of up to PX*PX pixels run whole, larger ones in tiles "
                        "of PX/2 (default: 2048 on a machine with at least 8 GiB of memory, else 1024)" + note)


def _add_file_arguments(p):
    p.add_argument("inputs", nargs="+", metavar="IN", help="input image files or glob patterns")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input only; type from its extension)")
    out.add_argument("--out-dir", metavar="DIR", help="directory for the outputs (default: beside each input)")
    p.add_argument("--mask", metavar="PNG", help="selection mask image (white = apply), same size as the input")
    _add_daemon_arguments(p)
    p.add_argument("--local", action="store_true", help="run in this process even if a daemon is running")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say whether the daemon or this process runs the job, also with --quiet or --local")
    _add_engine_arguments(p, note="; in-process runs only, a daemon uses its own settings")


def _add_daemon_arguments(p, timeout=60.0):
    p.add_argument("--endpoint", help="daemon endpoint, e.g. tcp://studio:5557 (default: $BRUSHWORK_ENDPOINT); a "
                                      "daemon named here or there must answer. Without either, the local daemon "
                                      "is used when it answers, else this process")
    p.add_argument("--server-key", metavar="FILE", default=os.environ.get("BRUSHWORK_SERVER_KEY") or None,
                   help="a remote daemon's public key file, server.key (default: $BRUSHWORK_SERVER_KEY)")
    p.add_argument("--client-key", metavar="FILE", default=os.environ.get("BRUSHWORK_CLIENT_KEY") or None,
                   help="this client's secret key file, NAME.key_secret (default: $BRUSHWORK_CLIENT_KEY)")
    p.add_argument("--timeout", type=float, default=timeout, help="seconds of daemon silence before giving up")


def build_parser():
    parser = argparse.ArgumentParser(prog="brushwork", description="Fast neural style transfer and "
                                     "super-resolution (Johnson et al., ECCV 2016) for Krita and GIMP.")
    parser.add_argument("--version", action="version", version=f"brushwork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon the editor plug-ins talk to",
                       description="Run the brushwork daemon (ZeroMQ) until SIGINT/SIGTERM.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--endpoint", help=f"ZeroMQ endpoint to bind (default: {protocol.default_endpoint()})")
    where.add_argument("--tcp", nargs="?", const="", metavar="[HOST:]PORT",
                       help=f"listen on TCP instead (default 127.0.0.1:{protocol.DEFAULT_TCP_PORT}); an address "
                            "other machines can reach, e.g. 0.0.0.0:5557, needs keys")
    p.add_argument("--server-key", metavar="FILE",
                   help="this daemon's secret key file (`brushwork keys server`): only clients on the allow-list "
                        "get in (default for non-loopback addresses: server.key_secret in the keys folder)")
    p.add_argument("--allow", metavar="PATH",
                   help="folder of allowed clients' public keys (*.key), or one such file (default: "
                        "allowed_clients/ in the keys folder)")
    _add_engine_arguments(p)
    p.add_argument("--max-pixels", type=int, default=protocol.DEFAULT_MAX_PIXELS,
                   help="largest image (input or output) in pixels (default: %(default)s)")
    p.add_argument("--max-bytes", type=int, default=protocol.DEFAULT_MAX_BYTES,
                   help="largest request in bytes (default: %(default)s)")
    p.add_argument("--queue", type=int, default=protocol.DEFAULT_QUEUE,
                   help="jobs that may wait for the worker (default: %(default)s)")
    p.add_argument("--content", metavar="DIR", default=os.environ.get("BRUSHWORK_CONTENT") or None,
                   help="folder of content photos for styles trained from the editors "
                        "(default: $BRUSHWORK_CONTENT; without it training requests are refused)")
    p.add_argument("--train-out", metavar="DIR",
                   help="where styles trained from the editors are saved and served from "
                        "(default: the user models dir)")
    p.add_argument("--train-jobs", type=int, default=1, metavar="N",
                   help="styles that may train at the same time (default: %(default)s)")
    p.add_argument("--train-iterations", type=int, default=2000, metavar="N",
                   help="training iterations when a request does not say (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list the models a running daemon serves, or the installed ones",
                       description="List the models (and device) of the daemon that answers, else the models "
                                   "found in the model directories, and problems with model files.")
    p.add_argument("--models", action="append", metavar="DIR",
                   help="extra model directory (repeatable; lists the installed models, not the daemon's)")
    p.add_argument("--local", action="store_true", help="list the installed models even if a daemon is running")
    _add_daemon_arguments(p, timeout=10.0)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("keys", help="create and allow the keys of a daemon other machines use",
                       description="CURVE keys for a daemon reached over the network (docs/security.md). Files go "
                                   "to --dir (default: the keys folder in your config dir): NAME.key is public, "
                                   "NAME.key_secret is secret; the server's allow-list is its allowed_clients/.")
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = keys.add_parser("server", help="create the daemon's key pair (on the server)")
    k.add_argument("--force", action="store_true", help="replace an existing key pair")
    k = keys.add_parser("client", help="create a client's key pair (on the client)")
    k.add_argument("name", help="a name for this client, e.g. laptop")
    k.add_argument("--force", action="store_true", help="replace an existing key pair")
    k = keys.add_parser("allow", help="let a client in: copy its public key into the allow-list (on the server)")
    k.add_argument("public_key", metavar="CLIENT.key", help="the client's public key file")
    k = keys.add_parser("revoke", help="remove a client from the allow-list (on the server)")
    k.add_argument("name", help="the client's name (its key file without .key)")
    for k in keys.choices.values():
        k.add_argument("--dir", metavar="DIR", help="the keys folder (default: in your config dir)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("stylize", help="apply a style model to image files",
                       description="Apply a style model to image files (via the daemon when one runs).")
    _add_file_arguments(p)
    p.add_argument("--style", metavar="NAME", help="style model name (see `brushwork models`)")
    p.add_argument("--strength", type=float, default=1.0, help="0 = original, 1 = full style (default: 1)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the input's colours, take only luminance")
    trainer_cli = _trainer_cli()
    if trainer_cli is not None:
        trainer_cli.add_optimize_arguments(p)
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("upscale", help="super-resolve image files",
                       description="Upscale image files with a super-resolution model.")
    _add_file_arguments(p)
    p.add_argument("--scale", type=int, choices=(2, 4, 8),
                   help="upscaling factor (default: the --model's, else 4); a --model of another scale is refused")
    p.add_argument("--model", metavar="NAME",
                   help="SR model (default: the first pixel-loss model for the scale, else the first by name; "
                        f"bundled: {SR_DEFAULTS})")
    p.add_argument("--histogram-match", action="store_true", help="match the output's colour histogram to the input")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("install-plugin", help="install (or remove) the Krita or GIMP plug-in",
                       description="Install the editor plug-in into the user's editor profile.")
    p.add_argument("editor", choices=("krita", "gimp"))
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.add_argument("--home", metavar="DIR", help="home directory to install under (default: yours)")
    p.add_argument("--python", metavar="CMD",
                   help="GIMP only: command that runs GIMP's Python, to check it can import pyzmq "
                        "(default: python3; e.g. 'chroot /srv/trixie python3')")
    p.add_argument("--krita-root", metavar="DIR",
                   help="Krita only: the system root Krita is installed in, e.g. a chroot (default: /); "
                        "its Python is checked for pyzmq there")
    p.set_defaults(func=cmd_install_plugin)

    p = sub.add_parser("package-plugin", help="build the Krita plug-in ZIP for Krita's importer",
                       description="Build a ZIP for Tools > Scripts > Import Python Plugin from File.")
    p.add_argument("editor", choices=("krita",))
    p.add_argument("-o", "--output", metavar="ZIP", help="output file (default: in the current directory)")
    p.set_defaults(func=cmd_package_plugin)

    if trainer_cli is not None:
        trainer_cli.register(sub)
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
        if exc.code == "cancelled":
            print("brushwork: cancelled", file=sys.stderr)
            return EXIT_CANCELLED
        print(f"brushwork: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("brushwork: interrupted", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
