"""``brushwork keys``: the CURVE keys of a daemon other machines use, and its allow-list (docs/security.md)."""

from pathlib import Path

from backend import protocol


def register(sub):
    """Add the ``keys`` command and its actions to the subcommands ``sub``."""
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


def cmd_keys(args):
    """Create key pairs, allow and revoke clients (docs/security.md)."""
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
