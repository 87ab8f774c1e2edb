"""What several ``brushwork`` commands share: the engine options, the daemon options, building a
model store and engine from them, finding the daemon to use, and the trainer's hooks.

Nothing here imports torch: the engine is imported only when a command builds one.
"""

import os

from backend import protocol


def trainer_cli():
    """The trainer's CLI hooks, or None while the trainer is not installed."""
    try:
        import trainer.cli
    except ImportError:
        return None
    return trainer.cli


def add_engine_arguments(p, note=""):
    """The options of an in-process Engine and its ModelStore (``note`` is added to each help text)."""
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


def add_daemon_arguments(p, timeout=60.0):
    """The options that name a daemon and its keys, and how long to wait for it."""
    p.add_argument("--endpoint", help=f"daemon endpoint, e.g. tcp://studio:{protocol.DEFAULT_TCP_PORT} (default: "
                                      "$BRUSHWORK_ENDPOINT); a daemon named here or there must answer. Without "
                                      "either, the local daemon is used when it answers, else this process")
    p.add_argument("--server-key", metavar="FILE", default=os.environ.get("BRUSHWORK_SERVER_KEY") or None,
                   help="a remote daemon's public key file, server.key (default: $BRUSHWORK_SERVER_KEY)")
    p.add_argument("--client-key", metavar="FILE", default=os.environ.get("BRUSHWORK_CLIENT_KEY") or None,
                   help="this client's secret key file, NAME.key_secret (default: $BRUSHWORK_CLIENT_KEY)")
    p.add_argument("--timeout", type=float, default=timeout, help="seconds of daemon silence before giving up")


def make_store(args):
    """The ModelStore the engine options describe."""
    from backend.model_store import ModelStore
    return ModelStore(args.models or (), include_bundled=not getattr(args, "no_bundled", False))


def make_engine(args, store):
    """An Engine on ``store`` with the engine options' device, precision and tile size (imports torch)."""
    from backend.engine import Engine
    return Engine(store, device=args.device, precision=args.precision, tile_size=args.tile_size)


def endpoint_named(args):
    """True when the user named a daemon: --endpoint, $BRUSHWORK_ENDPOINT or CURVE keys."""
    return bool(args.endpoint or os.environ.get("BRUSHWORK_ENDPOINT") or args.server_key or args.client_key)


def daemon_client(args):
    """A Client of the daemon that answered a short ping, or None when the default local daemon does
    not answer. A daemon the user named that does not answer is an error (Unavailable)."""
    from backend.client import Client
    named = endpoint_named(args)
    client = Client(args.endpoint, timeout=5.0 if args.server_key or args.client_key else 1.0,
                    server_key=args.server_key, client_key=args.client_key)
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
