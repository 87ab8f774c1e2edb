"""Where the daemon listens: ``--tcp`` parsing, which endpoints are allowed, and the IPC socket file.

Policy (docs/security.md): IPC and loopback TCP need no keys; any other TCP address, and an
abstract IPC socket (which has no file permissions), only with CURVE authentication. The IPC
socket file is created 0600 in an owner-only folder, never over a daemon that still answers,
and removed on exit only if it is still ours.
"""

import ipaddress
import os
import socket

import zmq

from backend import protocol
from backend.protocol import BadRequest, Unavailable


def tcp_endpoint(spec):
    """``--tcp`` value ``[HOST:]PORT`` (or empty) -> ``tcp://HOST:PORT`` (by default host 127.0.0.1 and
    port ``protocol.DEFAULT_TCP_PORT``)."""
    spec = (spec or "").strip()
    if ":" in spec and not spec.endswith("]"):
        host, _, port = spec.rpartition(":")
    else:  # a port alone, or a host alone
        host, port = ("", spec) if spec.isdigit() else (spec, "")
    host = host.strip("[]")
    host = "127.0.0.1" if host in ("", "localhost") else host
    port = port or str(protocol.DEFAULT_TCP_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRequest(f"bad TCP port {port!r} in --tcp {spec!r}; expected [HOST:]PORT")
    return f"tcp://{'[' + host + ']' if ':' in host else host}:{port}"


def is_loopback(endpoint):
    """True for IPC and for TCP on a loopback address (127.0.0.0/8, ::1, localhost)."""
    if endpoint.startswith("ipc://"):
        return True
    host = endpoint[len("tcp://"):].rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint, authenticated=False):
    """Refuse endpoints other than IPC and TCP, and non-loopback TCP unless ``authenticated`` (CURVE keys)."""
    if endpoint.startswith("ipc://"):
        if len(endpoint) <= len("ipc://"):
            raise BadRequest("IPC endpoint needs a socket path: ipc:///path/to/daemon.sock")
        if endpoint.startswith("ipc://@") and not authenticated:
            raise BadRequest(f"refusing to listen on {endpoint} without authentication: an abstract socket "
                             "(a name starting with '@') has no file permissions, so every local user could "
                             "use this daemon. Use a socket path (ipc:///path/daemon.sock), or keys")
        return
    if not endpoint.startswith("tcp://"):
        raise BadRequest(f"unsupported endpoint {endpoint!r}: use ipc://PATH or tcp://HOST:PORT")
    if not authenticated and not is_loopback(endpoint):
        raise BadRequest(f"refusing to listen on {endpoint} without authentication: other machines could use "
                         "this daemon. Create keys (`brushwork keys server`, `brushwork keys client NAME`, "
                         "`brushwork keys allow NAME.key`) and serve with --server-key/--allow (see "
                         "docs/security.md), or listen on a loopback address (127.0.0.1) and use an SSH tunnel")


def refuse_if_running(context, endpoint):
    """Raise Unavailable if a daemon already answers at ``endpoint`` (never steal its socket)."""
    other = daemon_answering(context, endpoint)
    if other is not None:
        raise Unavailable(f"a brushwork daemon (version {other.get('version', '?')}) is already running at "
                          f"{endpoint}; stop it first or choose another --endpoint")


def daemon_answering(context, endpoint, timeout=0.5):
    """The ``pong`` header of a daemon already answering at ``endpoint``, or None."""
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(endpoint)
        dealer.send(protocol.encode_header({"kind": "ping", "id": "startup-check"}), zmq.NOBLOCK)
        if dealer.poll(timeout * 1000):
            return protocol.decode_header(dealer.recv())
    except (zmq.ZMQError, protocol.BrushworkError):
        pass
    finally:
        dealer.close()
    return None


def _unix_socket_in_use(path):
    """True if something accepts connections on the Unix socket ``path`` (binding would take it over)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def bind_ipc(router, endpoint):
    """Bind ``router`` to the IPC ``endpoint``; return ``(path, inode)`` of the socket file it made
    (for :func:`remove_socket_file`), or None for an abstract socket, which has no file."""
    path = endpoint[len("ipc://"):]
    if path.startswith("@"):   # Linux's abstract namespace: no file to create, protect or remove
        router.bind(endpoint)
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    if directory == os.path.abspath(protocol.runtime_dir()):
        if os.stat(directory).st_uid != os.getuid():
            raise Unavailable(f"{directory} belongs to another user; refusing to put the socket there")
        os.chmod(directory, 0o700)
    if _unix_socket_in_use(path):  # e.g. a daemon with keys, which did not answer our key-less ping
        raise Unavailable(f"another program is listening on {path}; stop it first or choose another --endpoint")
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        router.bind(endpoint)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return path, os.stat(path).st_ino


def remove_socket_file(socket_file):
    """Remove the socket file :func:`bind_ipc` made, unless another daemon has replaced it since."""
    path, inode = socket_file
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
