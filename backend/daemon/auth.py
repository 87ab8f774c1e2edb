"""CURVE authentication for a daemon that other machines may reach.

ZeroMQ's CURVE mechanism encrypts a connection and proves both ends hold their secret keys;
pyzmq's ZAP handler (``zmq.auth.thread.ThreadAuthenticator``) then lets in only clients whose
public key is on the daemon's allow-list: a folder of ``*.key`` files (or one such file),
re-read at every handshake, so allowing or revoking a client needs no restart.

Key files are pyzmq's certificate files: ``NAME.key`` holds the public key (hand it out),
``NAME.key_secret`` holds both keys (mode 0600, never leaves its machine). The default folder
is :func:`user_keys_dir`; ``brushwork keys`` (backend/cli/keys.py) creates and allows keys.
"""

import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from backend.protocol import BadRequest, BrushworkError

log = logging.getLogger("brushwork.auth")

SERVER_KEY_NAME = "server"
ALLOWED_DIR_NAME = "allowed_clients"
KEY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ZAP_DOMAIN = "brushwork"
REFUSAL_LOG_INTERVAL_S = 60.0  # a refused client retries every few 100 ms: log each address once a minute


def require_curve():
    """Raise BadRequest unless this libzmq can do CURVE (it needs libsodium or its own tweetnacl)."""
    if not zmq.has("curve"):
        raise BadRequest(f"this libzmq ({zmq.zmq_version()}) was built without CURVE security, so keys cannot "
                         "be used; install a pyzmq wheel from PyPI (it bundles a libzmq with CURVE)")


def user_keys_dir():
    """The per-user folder for key files (it need not exist yet)."""
    home = Path.home()
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / "brushwork" / "keys"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "brushwork" / "keys"
    return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "brushwork" / "keys"


def public_key_file(directory, name):
    return Path(directory) / f"{name}.key"


def secret_key_file(directory, name):
    return Path(directory) / f"{name}.key_secret"


# ---- key files --------------------------------------------------------------------------

def create_key_pair(directory, name, force=False):
    """Write a new key pair ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) into ``directory``
    (created 0700); return (public path, secret path). Existing keys are kept unless ``force``."""
    require_curve()
    if not KEY_NAME_PATTERN.match(name):
        raise BadRequest(f"bad key name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    directory = Path(directory).expanduser()
    public, secret = public_key_file(directory, name), secret_key_file(directory, name)
    if not force and (public.exists() or secret.exists()):
        raise BadRequest(f"{secret} already exists; use --force to replace it (clients holding the old "
                         "public key will then be refused)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    old_umask = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        for path in (public, secret):
            path.unlink(missing_ok=True)
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old_umask)
    public.chmod(0o644)
    return public, secret


def _read_key_file(path):
    """(public, secret or None) z85 keys of a key file; BrushworkError saying what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadRequest(f"key file {path} does not exist")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{path} is not a brushwork/ZeroMQ key file ({exc})") from None
    for key in (public, secret):
        if key is not None and len(key) != 40:
            raise BadRequest(f"{path} holds a malformed key (expected 40 Z85 characters)")
    return public, secret


def load_secret_key(path):
    """(public, secret) keys from a ``.key_secret`` file that only its owner can read."""
    public, secret = _read_key_file(path)
    if secret is None:
        raise BadRequest(f"{path} holds only a public key; give the matching .key_secret file")
    if os.name == "posix" and Path(path).expanduser().stat().st_mode & 0o077:
        raise BadRequest(f"secret key file {path} is readable by other users; run `chmod 600 {path}`")
    return public, secret


def load_public_key(path):
    """The public key of a ``.key`` file (a ``.key_secret`` file gives its public half)."""
    return _read_key_file(path)[0]


def allow_client(public_file, allowed_dir):
    """Copy a client's public key file into the allow-list folder; return the new path."""
    public_file = Path(public_file).expanduser()
    public, secret = _read_key_file(public_file)
    if secret is not None:
        raise BadRequest(f"{public_file} is a SECRET key file: copy only the client's public .key file to the "
                         "server (and keep the secret one on the client)")
    name = public_file.name[:-len(".key")] if public_file.name.endswith(".key") else public_file.stem
    if not KEY_NAME_PATTERN.match(name):
        raise BadRequest(f"bad key name {name!r}: rename the file to NAME.key (letters, digits, '_', '.', '-')")
    target = public_key_file(allowed_dir, name)
    if target.exists() and _read_key_file(target)[0] != public:
        raise BadRequest(f"{target} already allows a different key named {name!r}; revoke it first or "
                         "rename the new file")
    Path(allowed_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(public_file, target)
    return target


def revoke_client(name, allowed_dir):
    """Remove ``NAME.key`` from the allow-list folder; return its path."""
    target = public_key_file(allowed_dir, name)
    if not KEY_NAME_PATTERN.match(name) or not target.is_file():
        raise BadRequest(f"no client named {name!r} in {allowed_dir}")
    target.unlink()
    return target


class AllowList:
    """The public keys of the clients a daemon accepts: every ``*.key`` file of a folder, or one file."""

    def __init__(self, path):
        self.path = Path(path).expanduser()

    def keys(self):
        """{z85 public key: file name}, read now; unreadable files are logged and skipped."""
        files = sorted(self.path.glob("*.key")) if self.path.is_dir() else [self.path]
        keys = {}
        for file in files:
            try:
                keys[load_public_key(file)] = file.name
            except BrushworkError as exc:
                log.warning("allow-list: skipping %s", exc)
        return keys


# ---- the daemon's side --------------------------------------------------------------------

class ServerAuth:
    """A daemon's CURVE identity and allow-list: ``start`` the ZAP handler, ``secure`` the
    listening socket before it binds, ``stop`` before the ZeroMQ context ends."""

    def __init__(self, secret_key_path, allow_path):
        require_curve()
        self.public_key, self.secret_key = load_secret_key(secret_key_path)
        self.allow_list = AllowList(allow_path)
        if not self.allow_list.path.exists():
            raise BadRequest(f"the allow-list {self.allow_list.path} does not exist; allow a client with "
                             "`brushwork keys allow CLIENT.key`")
        if not self.allow_list.keys():
            raise BadRequest(f"the allow-list {self.allow_list.path} holds no client keys (*.key); allow a "
                             "client with `brushwork keys allow CLIENT.key`")
        self._zap = None
        self._handshake_refusals = _RefusalLog()

    def start(self, context):
        """Run the ZAP handler thread in ``context`` (the daemon's)."""
        self._zap = _AllowListAuthenticator(context, self.allow_list)
        self._zap.start()
        self._zap.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self._zap)

    def secure(self, socket):
        """Make ``socket`` a CURVE server (call before it binds)."""
        socket.curve_secretkey = self.secret_key
        socket.curve_publickey = self.public_key
        socket.curve_server = True
        socket.zap_domain = ZAP_DOMAIN.encode()

    def handshake_failed(self, event):
        """Log a client whose handshake failed before the allow-list was asked (ZeroMQ does not tell
        its address at this stage): no keys, or the wrong server key. ``event`` is a socket-monitor
        event (the daemon's :class:`backend.daemon.connections.ConnectionGuard` passes them on)."""
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            reason = "the handshake broke off (the client uses no keys, or went away)"
        else:
            reason = _HANDSHAKE_FAILURES.get(event["value"], f"bad CURVE handshake (ZeroMQ error {event['value']})")
        self._handshake_refusals(f"connecting to {event['endpoint'].decode('utf-8', 'replace')}", reason)

    def stop(self):
        """Stop the ZAP handler."""
        if self._zap is not None:
            self._zap.stop()
            self._zap = None


class _RefusalLog:
    """Logs a refused client at most once a minute per (where, reason)."""

    def __init__(self):
        self._last = {}

    def __call__(self, where, reason):
        now = time.monotonic()
        if len(self._last) > 1000:  # many keys or addresses: forget the old ones
            self._last = {k: t for k, t in self._last.items() if now - t < REFUSAL_LOG_INTERVAL_S}
        if now - self._last.get((where, reason), -REFUSAL_LOG_INTERVAL_S) >= REFUSAL_LOG_INTERVAL_S:
            self._last[(where, reason)] = now
            log.warning("refused a client %s: %s; it gets no replies", where, reason)


class _AllowListAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, asking the allow-list about each CURVE client and logging refusals."""

    def __init__(self, context, allow_list):
        super().__init__(context, log=logging.getLogger("brushwork.auth.zap"))
        self.allow_list = allow_list
        self._address = "?"
        self._refused = _RefusalLog()

    async def handle_zap_message(self, msg):
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def callback(self, domain, key):
        """Credentials provider: True if ``key`` (z85 bytes) is on the allow-list."""
        name = self.allow_list.keys().get(key)
        if name is None:
            self._refused(f"from {self._address}", f"unknown key {key.decode('ascii', 'replace')} (not in "
                                         f"{self.allow_list.path})")
            return False
        log.info("client at %s authenticated with allowed key %s", self._address, name)
        return True


_HANDSHAKE_FAILURES = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "the client uses no keys",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "the client's server key is not this daemon's public key",
}
