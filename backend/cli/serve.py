"""``brushwork serve``: check the endpoint and keys, start the engine, print what it serves, run the daemon.

The endpoint and key checks run before the engine starts (seconds: it imports torch), so a
mistake is reported at once.
"""

import logging
import os
import signal
from pathlib import Path

from backend import __version__, protocol
from backend.cli.shared import add_engine_arguments, make_engine, make_store


def register(sub):
    """Add the ``serve`` command to the subcommands ``sub``."""
    p = sub.add_parser("serve", help="run the daemon the editor plug-ins talk to",
                       description="Run the brushwork daemon (ZeroMQ) until SIGINT/SIGTERM.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--endpoint", help=f"ZeroMQ endpoint to bind (default: {protocol.default_endpoint()})")
    where.add_argument("--tcp", nargs="?", const="", metavar="[HOST:]PORT",
                       help=f"listen on TCP instead (default 127.0.0.1:{protocol.DEFAULT_TCP_PORT}); an address "
                            f"other machines can reach, e.g. 0.0.0.0:{protocol.DEFAULT_TCP_PORT}, needs keys")
    p.add_argument("--server-key", metavar="FILE",
                   help="this daemon's secret key file (`brushwork keys server`): only clients on the allow-list "
                        "get in (default for non-loopback addresses: server.key_secret in the keys folder)")
    p.add_argument("--allow", metavar="PATH",
                   help="folder of allowed clients' public keys (*.key), or one such file (default: "
                        "allowed_clients/ in the keys folder)")
    add_engine_arguments(p)
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
    p.add_argument("--train-iterations", type=int, default=protocol.TRAIN_OPTIONS["iterations"].editor_default,
                   metavar="N",
                   help="training iterations when a request does not say (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)


def _serve_endpoint(args):
    from backend.daemon.endpoints import tcp_endpoint
    if args.tcp is not None:
        return tcp_endpoint(args.tcp)
    return args.endpoint or protocol.default_endpoint()


def _serve_auth(args, endpoint):
    """The daemon's ServerAuth: for any endpoint given --server-key/--allow, and always for a
    non-loopback one (with the default key files); None for a local daemon without keys."""
    from backend.daemon import auth
    from backend.daemon.endpoints import is_loopback

    if args.server_key is None and args.allow is None and is_loopback(endpoint):
        return None
    keys_dir = auth.user_keys_dir()
    secret = Path(args.server_key or auth.secret_key_file(keys_dir, auth.SERVER_KEY_NAME)).expanduser()
    if not args.server_key and not secret.exists():
        why = ("--allow needs" if is_loopback(endpoint)
               else f"listening on {endpoint} lets other machines in, so it needs")
        raise protocol.BadRequest(f"{why} keys, and there is no server key at {secret}: run `brushwork keys server`, "
                                  "allow each client with `brushwork keys allow CLIENT.key` (see docs/security.md), "
                                  "or listen on a loopback address")
    return auth.ServerAuth(secret, args.allow or keys_dir / auth.ALLOWED_DIR_NAME)


def cmd_serve(args):
    """Run the daemon until SIGINT/SIGTERM."""
    from backend.model_store import user_models_dir
    import zmq

    from backend.daemon.connections import raise_descriptor_limit
    from backend.daemon.endpoints import check_endpoint, refuse_if_running
    from backend.daemon.server import Daemon

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    endpoint = _serve_endpoint(args)
    auth = _serve_auth(args, endpoint)
    check_endpoint(endpoint, authenticated=auth is not None)  # these before the slow engine start
    refuse_if_running(zmq.Context.instance(), endpoint)
    train_out = Path(args.train_out).expanduser() if args.train_out else user_models_dir()
    if args.train_out and train_out not in [Path(d).expanduser() for d in args.models or ()]:
        args.models = [*(args.models or ()), str(train_out)]  # serve what it trains
    store = make_store(args)
    engine = make_engine(args, store)
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
