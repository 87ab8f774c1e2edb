"""Keeping a TCP daemon reachable: connections that never send a request cannot crowd out clients.

Every TCP connection costs the daemon a file descriptor, from the moment ZeroMQ accepts it, and
ZeroMQ drops one that never completes its handshake only after the handshake timeout. Idle
sockets (a port scan, a client failing CURVE, or a flood of them) could otherwise use up the
daemon's descriptors, and then no allowed client gets in. :class:`ConnectionGuard` watches the
ROUTER socket's accept and disconnect events: a connection is *idle* until its first message
arrives, and when there are more than ``max_idle`` idle connections (or ``max_idle_per_peer``
from one address) the oldest ones are shut down. A client that sends its request at once is
never the oldest. Connections that have sent a request are left alone: with keys only allowed
clients can send one, and ZeroMQ's heartbeats drop those that go silent.
"""

import collections
import contextlib
import errno
import logging
import socket

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("brushwork.daemon")

MAX_IDLE = 64             # connections that have not sent a request yet, all peers together
MAX_IDLE_PER_PEER = 16    # the same, from one IP address
HANDSHAKE_S = 5.0         # ZeroMQ drops a connection that has not completed its handshake by then


def raise_descriptor_limit():
    """Raise this process's soft limit of open files to its hard limit (where the platform has one);
    return the new soft limit or None."""
    try:
        import resource
    except ImportError:   # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


class ConnectionGuard:
    """Watches ``router`` (a bound TCP ROUTER socket): poll :attr:`socket` and call :meth:`on_events`
    when it is readable; call :meth:`seen` with each request's first frame.

    A ZeroMQ socket has one monitor, and this is it: ``on_handshake_failed(event)``, if given,
    hears the failed handshakes (a CURVE daemon logs them, see :mod:`backend.daemon.auth`)."""

    def __init__(self, router, max_idle=MAX_IDLE, max_idle_per_peer=MAX_IDLE_PER_PEER, on_handshake_failed=None):
        router.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_S * 1000))
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
        self.socket = router.get_monitor_socket(events | (HANDSHAKE_FAILED if on_handshake_failed else 0))
        self._on_handshake_failed = on_handshake_failed
        self._router = router
        self.max_idle, self.max_idle_per_peer = max_idle, max_idle_per_peer
        self._idle = collections.OrderedDict()   # fd -> (host, port), oldest first
        self.cut = 0                               # idle connections shut down so far

    def close(self):
        self._router.disable_monitor()
        self.socket.close(linger=0)

    def seen(self, frame):
        """A request arrived on ``frame``'s connection: it is no longer idle."""
        try:
            self._idle.pop(frame.get(zmq.SRCFD), None)
        except zmq.ZMQError:
            pass

    def on_events(self):
        """Take the pending accept/disconnect events, then shut down the oldest idle connections
        beyond the limits."""
        while True:
            try:
                event = recv_monitor_message(self.socket, zmq.NOBLOCK)
            except zmq.Again:
                break
            if event["event"] & HANDSHAKE_FAILED:
                self._on_handshake_failed(event)
                continue
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                peer = _peer(fd)
                if peer is not None:
                    self._idle[fd] = peer
            else:
                self._idle.pop(fd, None)
        self._enforce()

    def _enforce(self):
        by_host = collections.Counter(host for host, _ in self._idle.values())
        for fd, peer in list(self._idle.items()):   # oldest first
            if len(self._idle) > self.max_idle or by_host[peer[0]] > self.max_idle_per_peer:
                del self._idle[fd]
                by_host[peer[0]] -= 1
                if _shut_down(fd, peer):
                    self.cut += 1
                    if self.cut == 1 or self.cut % 1000 == 0:
                        log.warning("shut down %d idle connection(s) so far (the latest from %s): more than %d "
                                    "connections sent no request (%d from one address)", self.cut, peer[0],
                                    self.max_idle, self.max_idle_per_peer)


@contextlib.contextmanager
def _borrowed(fd):
    """A socket object on ZeroMQ's descriptor ``fd``, handed back (not closed) afterwards. No
    ``os.dup``: under a descriptor limit that is used up, which is when idle connections must be
    cut, a copy could not be made."""
    sock = socket.socket(fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()


def _peer(fd):
    """(host, port) of the TCP connection on descriptor ``fd``, or None."""
    try:
        with _borrowed(fd) as sock:
            return sock.getpeername()[:2]
    except (OSError, ValueError, TypeError):
        return None


def _shut_down(fd, peer):
    """Shut down the connection on ``fd`` if it is still the one from ``peer`` (ZeroMQ then closes
    it); the check makes sure a descriptor number reused meanwhile is never touched."""
    try:
        with _borrowed(fd) as sock:
            if sock.getpeername()[:2] != peer:
                return False
            sock.shutdown(socket.SHUT_RDWR)
            return True
    except OSError as exc:
        if exc.errno not in (errno.EBADF, errno.ENOTSOCK, errno.ENOTCONN):
            log.debug("could not shut down an idle connection: %s", exc)
        return False
