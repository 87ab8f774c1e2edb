"""The brushwork daemon's loop: a ZeroMQ ROUTER socket in front of one compute worker thread.

The loop owns every socket. It checks each request (backend/daemon/request_checks.py) and answers
``ping``, ``info``, ``echo`` and ``cancel`` at once (from the model store's last scan: a watcher
thread re-scans the folders), and puts image jobs (backend/daemon/jobs.py) into a bounded queue
that is fair across clients (backend/daemon/fair_queue.py). One worker thread runs the jobs one
at a time (backend/daemon/worker.py) and hands its replies back to the loop over an inproc
PUSH/PULL pair, because ZeroMQ sockets must not be shared between threads. ``train_style`` and
``distill`` requests bypass the queue: each trains in a process of its own (backend/daemon/training.py),
whose messages reach the loop through a thread-safe outbox.

Clients that go away lose their jobs: the ROUTER socket is "mandatory", so a message to
a connection that is gone fails; the keep-alive (every ``protocol.HEARTBEAT_S``) finds such a
client soon after it disconnects (or, through ZeroMQ heartbeats, after ``peer_timeout`` s of
silence) and its queued jobs are dropped, its running job and trainings cancelled. See
docs/protocol.md.
"""

import errno
import logging
import queue as queue_module
import threading
import time

import zmq

from backend import __version__, protocol
from backend.daemon.connections import ConnectionGuard
from backend.daemon.endpoints import bind_ipc, check_endpoint, refuse_if_running, remove_socket_file
from backend.daemon.fair_queue import FairQueue, Job, waiting_message
from backend.daemon.info_reply import info_reply
from backend.daemon.jobs import JOB_KINDS
from backend.daemon.request_checks import check_header, check_image_request, check_request_size
from backend.daemon.training import TrainingJobs
from backend.daemon.worker import work
from backend.protocol import BrushworkError

log = logging.getLogger("brushwork.daemon")

LOOP_POLL_MS = 200         # how often the loop looks at the stop flag
MAX_MESSAGE_SLACK = 1 << 20  # ZMQ_MAXMSGSIZE hard cap = max_bytes + this
PEER_TIMEOUT_S = 30.0      # a connection that sends nothing (not even ZeroMQ heartbeat replies) this long is dropped
MODEL_SCAN_S = 0.25        # how often the watcher thread looks for changed model files


class Daemon:
    """Serve ``engine`` (with its ``store``) at ``endpoint`` until :meth:`stop` is called.

    ``training`` holds the keyword arguments of :class:`backend.daemon.training.TrainingJobs`
    (``content_dir``, ``out_dir``, ``limit``, ``defaults``). A connection silent for
    ``peer_timeout`` seconds is dropped, and with it its jobs. ``auth``, a
    :class:`backend.daemon.auth.ServerAuth`, makes the socket a CURVE server that admits only the
    clients on its allow-list; without it only IPC and loopback TCP are allowed.
    """

    def __init__(self, engine, store, endpoint, max_pixels=protocol.DEFAULT_MAX_PIXELS,
                 max_bytes=protocol.DEFAULT_MAX_BYTES, queue=protocol.DEFAULT_QUEUE, training=None,
                 peer_timeout=PEER_TIMEOUT_S, auth=None):
        check_endpoint(endpoint, authenticated=auth is not None)
        for name, value in (("max_pixels", max_pixels), ("max_bytes", max_bytes), ("queue", queue)):
            if int(value) < 1:
                raise protocol.BadRequest(f"{name} must be at least 1, got {value}")
        self.engine = engine
        self.store = store
        self.endpoint = endpoint
        self.auth = auth
        self.limits = {"max_pixels": int(max_pixels), "max_bytes": int(max_bytes), "queue": int(queue)}
        self.queue = FairQueue(int(queue))
        self.peer_timeout = float(peer_timeout)
        self._outbox = queue_module.SimpleQueue()  # (identity, header) from training threads, sent by the loop
        self.trainings = TrainingJobs(store, lambda identity, header: self._outbox.put((identity, header)),
                                      device=engine.device, client_content=endpoint.startswith("ipc://"),
                                      **(training or {}))
        self._context = zmq.Context()
        self._stop = threading.Event()
        self._router = self._replies = None
        self._guard = None         # ConnectionGuard of a TCP endpoint
        self._socket_file = None   # (path, inode) of our IPC socket, removed on exit
        self._reply_endpoint = f"inproc://brushwork-replies-{id(self)}"

    # -- lifecycle

    def bind(self):
        """Open the listening socket; raise BrushworkError if another daemon is already there."""
        refuse_if_running(self._context, self.endpoint)
        router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.MAXMSGSIZE, self.limits["max_bytes"] + MAX_MESSAGE_SLACK)
        router.setsockopt(zmq.IPV6, self.endpoint.startswith("tcp://["))
        self._watch_peers(router)
        try:
            if self.auth is not None:
                self.auth.start(self._context)
                self.auth.secure(router)
            if self.endpoint.startswith("ipc://"):
                self._socket_file = bind_ipc(router, self.endpoint)
            else:
                router.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self._close_unbound(router)
            raise protocol.Unavailable(f"cannot listen on {self.endpoint}: {exc}") from None
        except BaseException:
            self._close_unbound(router)
            raise
        self._router = router
        if self.endpoint.startswith("tcp://"):
            self._guard = ConnectionGuard(router, on_handshake_failed=self.auth.handshake_failed
                                          if self.auth is not None else None)
        self._replies = self._context.socket(zmq.PULL)
        self._replies.bind(self._reply_endpoint)

    def _watch_peers(self, router):
        """Make sends to vanished clients fail (see :meth:`_client_gone`) and drop silent connections."""
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(self.peer_timeout * 1000 / 3)))
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(self.peer_timeout * 1000)))

    def _close_unbound(self, router):
        router.close()
        if self.auth is not None:
            self.auth.stop()

    def stop(self):
        """Ask the loop to shut down (safe from signal handlers and other threads)."""
        self._stop.set()

    def serve(self):
        """Run until stop(): bind if needed, start the worker, route messages, then clean up."""
        if self._router is None:
            self.bind()
        self.store.refresh()
        worker = threading.Thread(target=work, args=(self.engine, self.queue, self._context, self._reply_endpoint),
                                  name="brushwork-worker", daemon=True)
        worker.start()
        threading.Thread(target=self._watch_models, name="brushwork-models", daemon=True).start()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._replies, zmq.POLLIN)
        if self._guard is not None:
            poller.register(self._guard.socket, zmq.POLLIN)
        next_heartbeat = time.monotonic() + protocol.HEARTBEAT_S
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(LOOP_POLL_MS))
                try:
                    if self._replies in events:
                        self._forward_replies()
                    if self._router in events:
                        self._receive_requests()
                    if self._guard is not None and self._guard.socket in events:
                        self._guard.on_events()
                    self._send_outbox()
                    if time.monotonic() >= next_heartbeat:
                        self._heartbeat()
                        next_heartbeat = time.monotonic() + protocol.HEARTBEAT_S
                except Exception:   # a bug must cost one message, not the daemon
                    log.exception("internal error in the daemon's loop")
        finally:
            self._shut_down(worker)

    def _shut_down(self, worker):
        log.info("shutting down")
        for job in self.queue.close():
            self._send_error(job.identity, job.id, protocol.Unavailable("the daemon is shutting down"))
        running = self.queue.running
        if running is not None:
            running.cancelled.set()
        self._close_trainings()
        worker.join(timeout=30)
        self._forward_replies()  # the cancelled jobs' error replies
        self._send_outbox()
        if self._guard is not None:
            self._guard.close()
        self._router.close(linger=1000)  # let those replies leave
        self._replies.close()
        if self.auth is not None:
            self.auth.stop()
        if worker.is_alive():
            log.warning("the running job did not stop within 30 s; exiting without waiting for it")
        else:
            self._context.term()
        if self._socket_file is not None:
            remove_socket_file(self._socket_file)

    def _close_trainings(self):
        """Stop the trainer processes (each may take seconds to checkpoint), keeping their clients'
        keep-alive going meanwhile so that they hear "cancelled", not a dead daemon."""
        closing = threading.Thread(target=self.trainings.close, name="brushwork-close-trainings")
        closing.start()
        while closing.is_alive():
            self._send_outbox()
            self.trainings.heartbeat()
            closing.join(timeout=protocol.HEARTBEAT_S / 2)
        self._send_outbox()

    # -- loop side

    def _send(self, identity, header, frames=()):
        self._route([identity, protocol.encode_header(header), *frames])

    def _route(self, message):
        """Send ``[identity, frames...]`` without blocking; False if the client is gone (its jobs are
        then cancelled). A client too slow to read (its ZeroMQ send buffer is full) misses the message.
        """
        try:
            self._router.send_multipart(message, copy=False, flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            identity = message[0] if isinstance(message[0], bytes) else message[0].bytes
            if exc.errno == errno.EHOSTUNREACH:
                self._client_gone(identity)
                return False
            if exc.errno != zmq.EAGAIN:
                raise
            log.warning("client %s is not reading its replies; one was dropped", identity.hex())
        return True

    def _client_gone(self, identity):
        """Drop the queued jobs of a disconnected client and cancel its running job and trainings."""
        dropped = self.queue.remove_client(identity)
        running = self.queue.running
        if running is not None and running.identity == identity and not running.cancelled.is_set():
            running.cancelled.set()
            dropped.append(running)
        for job in dropped:
            log.info("client %s went away: %s %s cancelled", identity.hex(), job.kind, job.id)

    def _send_error(self, identity, request_id, error):
        self._send(identity, {"kind": "error", "id": request_id, "code": error.code, "message": error.message})

    def _send_outbox(self):
        while True:
            try:
                identity, header = self._outbox.get_nowait()
            except queue_module.Empty:
                return
            delivered = self._route([identity, protocol.encode_header(header)])
            if not delivered and header.get("message") != "cancelling":   # its client is gone
                self.trainings.cancel(identity, header["id"])

    def _forward_replies(self):
        while True:
            try:
                message = self._replies.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._route(message)

    def _receive_requests(self):
        while True:
            try:
                message = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, frames = message[0].bytes, message[1:]
            if self._guard is not None:
                self._guard.seen(message[-1])
            request_id = None
            try:
                if not frames:
                    raise protocol.BadRequest("empty message: expected a JSON header frame")
                header = protocol.decode_header(frames[0].bytes)
                if isinstance(header.get("id"), str) and header["id"]:
                    request_id = header["id"]
                check_request_size(frames, self.limits["max_bytes"])
                self._handle(identity, header, frames[1:])
            except BrushworkError as exc:
                log.debug("request %s refused: %s: %s", request_id, exc.code, exc.message)
                self._send_error(identity, request_id, exc)
            except Exception:
                log.exception("internal error handling request %s", request_id)
                self._send_error(identity, request_id, protocol.InternalError())

    def _handle(self, identity, header, frames):
        request_id, kind = check_header(header)
        log.debug("request %s: %s", request_id, kind)
        immediate = {"ping": self._ping, "info": self._info, "echo": self._echo, "cancel": self._cancel}
        if kind in immediate:
            immediate[kind](identity, header, frames)
        elif kind in JOB_KINDS:
            JOB_KINDS[kind].check(header, frames, self.limits, self.store)
            job = Job(identity, header, frames)
            ahead = self.queue.put(job)
            self._send(identity, {"kind": "progress", "id": request_id, "done": 0, "total": 0,
                                  "message": waiting_message(ahead) if ahead else "starting"})
        elif kind == "train_style":
            check_image_request(header, frames, self.limits["max_pixels"], allow_mask=False)
            self.trainings.start(identity, header, frames)
        elif kind == "distill":
            if frames:
                raise protocol.BadRequest(f"a distill request has no pixel frames, got {len(frames)}")
            self.trainings.distill(identity, header)
        else:
            known = ["ping", "info", "echo", "cancel", *JOB_KINDS, "train_style", "distill"]
            raise protocol.UnknownKind(f"unknown message kind {kind!r}; this daemon handles {', '.join(known)}")

    def _ping(self, identity, header, frames):
        self._send(identity, {"kind": "pong", "id": header["id"], "version": __version__,
                              "protocol": protocol.PROTOCOL_VERSION})

    def _info(self, identity, header, frames):
        local = self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@")
        self._send(identity, info_reply(header["id"], self.engine, self.store, self.limits, self.trainings.describe(),
                                        local=local, thumbnails=header.get("thumbnails") is True))

    def _echo(self, identity, header, frames):
        width, height, fmt = check_image_request(header, frames, self.limits["max_pixels"], allow_mask=False)
        self._send(identity, {"kind": "result", "id": header["id"], "width": width, "height": height,
                              "format": fmt}, frames)

    def _cancel(self, identity, header, frames):
        target = header.get("target")
        if not isinstance(target, str):
            raise protocol.BadRequest("cancel needs a 'target' string: the id of the request to cancel")
        queued = self.queue.remove(identity, target)
        running = self.queue.running
        found = queued is not None
        if queued is not None:
            self._send_error(identity, target, protocol.Cancelled("cancelled before it started"))
        elif running is not None and running.identity == identity and running.id == target:
            running.cancelled.set()
            log.info("cancelling %s %s at step %d of %d", running.kind, running.id, running.done, running.total)
            found = True
        else:
            found = self.trainings.cancel(identity, target, keep=header.get("keep") is True)
        self._send(identity, {"kind": "ok", "id": header["id"], "found": found})

    def _heartbeat(self):
        running, queued = self.queue.snapshot()
        if running is not None and not running.cancelled.is_set():
            self._send(running.identity, {"kind": "progress", "id": running.id, "done": running.done,
                                          "total": running.total, "message": "working"})
        for ahead, job in enumerate(queued, start=running is not None):
            self._send(job.identity, {"kind": "progress", "id": job.id, "done": 0, "total": 0,
                                      "message": waiting_message(ahead)})
        self.trainings.heartbeat()

    def _watch_models(self):
        """Re-scan the model folders every MODEL_SCAN_S, so that the loop, which answers from the last
        scan, never waits for one (a folder full of hostile files can take seconds to check)."""
        while not self._stop.wait(MODEL_SCAN_S):
            try:
                self.store.refresh()
            except Exception:   # a bug must cost one scan, not the watcher
                log.exception("internal error scanning the model folders")
