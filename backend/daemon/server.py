"""The brushwork daemon: a ZeroMQ ROUTER socket in front of one compute worker thread.

The main loop owns every socket. It answers ``ping``, ``info``, ``echo`` and ``cancel``
at once (from the model store's last scan: a watcher thread re-scans the folders) and puts
image jobs into a bounded queue that is fair across clients (round-robin by ZeroMQ identity).
One worker thread runs the jobs one at a time (the GPU or CPU is one resource) and hands its
replies back to the loop over an inproc PUSH/PULL pair, because ZeroMQ sockets must not be
shared between threads. ``train_style`` requests bypass the
queue: each trains in a process of its own (backend/daemon/training.py), whose messages reach the
loop through a thread-safe outbox.

Clients that go away lose their jobs: the ROUTER socket is "mandatory", so a message to
a connection that is gone fails; the 2-second keep-alive finds such a client soon after
it disconnects (or, through ZeroMQ heartbeats, after ``peer_timeout`` s of silence) and
its queued jobs are dropped, its running job and trainings cancelled. See docs/protocol.md.
"""

import base64
import collections
import ctypes
import ctypes.util
import errno
import ipaddress
import logging
import os
import queue as queue_module
import threading
import time

import zmq

from backend import __version__, pixels, protocol
from backend.daemon.connections import ConnectionGuard
from backend.model_files import MAX_THUMBNAIL_BYTES, read_regular_file
from backend.protocol import BrushworkError
from backend.daemon.training import TrainingJobs

log = logging.getLogger("brushwork.daemon")

HEARTBEAT_S = 2.0          # keep-alive progress to waiting clients, so their timeouts mean "daemon dead"
LOOP_POLL_MS = 200         # how often the loop looks at the stop flag
MAX_MESSAGE_SLACK = 1 << 20  # ZMQ_MAXMSGSIZE hard cap = max_bytes + this
PEER_TIMEOUT_S = 30.0      # a connection that sends nothing (not even ZeroMQ heartbeat replies) this long is dropped
MODEL_SCAN_S = 0.25        # how often the watcher thread looks for changed model files


def _malloc_trim():
    """glibc's ``malloc_trim``, or a no-op where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda pad: 0


# Hands the C heap's free memory back to the system after each job. Without it glibc keeps
# what a large image (or many image sizes) needed, and the daemon's resident memory stays at
# its high-water mark (measured with benchmarks/fuzz_daemon.py and tests/test_fuzz_daemon.py).
_return_free_memory = _malloc_trim()


class Job:
    """One queued image job: who asked, what, and a flag the worker polls per tile."""

    def __init__(self, identity, header, frames):
        self.identity = identity
        self.id = header["id"]
        self.kind = header["kind"]
        self.header = header
        self.frames = frames
        self.cancelled = threading.Event()
        self.done = 0
        self.total = 0


class FairQueue:
    """Bounded job queue served round-robin across client identities. Thread-safe.

    Clients take turns, one job each, in the order they first queued; a client that was just
    served never goes next while another client waits.
    """

    def __init__(self, limit):
        self.limit = limit
        self._by_client = collections.OrderedDict()  # identity -> deque of jobs, in serving order
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()
        self.running = None  # the job the worker is on
        self._last_served = None

    def put(self, job):
        """Queue ``job``; return how many jobs are ahead of it (the running one included). Raises Busy when full."""
        with self._cond:
            if self._size >= self.limit:
                raise protocol.Busy(f"the daemon's queue is full ({self.limit} jobs waiting); try again later")
            self._by_client.setdefault(job.identity, collections.deque()).append(job)
            self._size += 1
            self._cond.notify()
            return self._serving_order().index(job) + (self.running is not None)

    @staticmethod
    def _pop_next(by_client, last_served):
        """Remove and return (identity, job) of the job to serve next from ``by_client``."""
        if next(iter(by_client)) == last_served and len(by_client) > 1:
            by_client.move_to_end(last_served)
        identity, jobs = next(iter(by_client.items()))
        job = jobs.popleft()
        del by_client[identity]
        if jobs:  # this client goes to the back of the line
            by_client[identity] = jobs
        return identity, job

    def _serving_order(self):
        """The queued jobs in the order the worker will take them if no others arrive (lock held)."""
        by_client = collections.OrderedDict((k, collections.deque(v)) for k, v in self._by_client.items())
        last, order = self._last_served, []
        while by_client:
            last, job = self._pop_next(by_client, last)
            order.append(job)
        return order

    def take(self):
        """Block until a job is available (then mark it running) or the queue is closed (None)."""
        with self._cond:
            while not self._size and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._last_served, job = self._pop_next(self._by_client, self._last_served)
            self._size -= 1
            self.running = job
            return job

    def finish(self, job):
        with self._cond:
            if self.running is job:
                self.running = None

    def remove(self, identity, job_id):
        """Take a queued (not yet running) job out; return it or None."""
        with self._cond:
            jobs = self._by_client.get(identity, ())
            for job in jobs:
                if job.id == job_id:
                    jobs.remove(job)
                    if not jobs:
                        del self._by_client[identity]
                    self._size -= 1
                    return job
            return None

    def remove_client(self, identity):
        """Take all of ``identity``'s queued jobs out; return them (a list, maybe empty)."""
        with self._cond:
            jobs = list(self._by_client.pop(identity, ()))
            self._size -= len(jobs)
            return jobs

    def snapshot(self):
        """(running job or None, queued jobs in the order they will run)."""
        with self._cond:
            return self.running, self._serving_order()

    def close(self):
        """Stop the worker after its current job; return the jobs that were still waiting."""
        with self._cond:
            self._closed = True
            waiting = [job for jobs in self._by_client.values() for job in jobs]
            self._by_client.clear()
            self._size = 0
            self._cond.notify_all()
            return waiting


def waiting_message(ahead):
    """The progress message of a queued job with ``ahead`` jobs (the running one included) before it."""
    return f"waiting, {ahead} job{'' if ahead == 1 else 's'} ahead"


# ---- request validation -------------------------------------------------------------

def _positive_int(header, key):
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise protocol.BadRequest(f"{key!r} must be a positive integer, got {value!r}")
    return value


def check_image_request(header, frames, max_pixels, allow_mask=True):
    """Validate width/height/format/mask against the binary frames; raise the fitting error."""
    width, height = _positive_int(header, "width"), _positive_int(header, "height")
    if width * height > max_pixels:
        raise protocol.TooLarge(f"{width}x{height} is {width * height} pixels; this daemon accepts at most "
                                f"{max_pixels} (brushwork serve --max-pixels)")
    fmt = protocol.validate_format(header.get("format"))
    has_mask = header.get("mask", False)
    if not isinstance(has_mask, bool) or (has_mask and not allow_mask):
        raise protocol.BadRequest(f"'mask' must be true or false{'' if allow_mask else ' (false here)'}")
    wanted = 2 if has_mask else 1
    if len(frames) != wanted:
        raise protocol.BadRequest(f"expected {wanted} binary frame(s) after the header "
                                  f"({'pixels, mask' if has_mask else 'pixels'}), got {len(frames)}")
    expected = protocol.frame_size(width, height, fmt)
    if len(frames[0]) != expected:
        raise protocol.BadPixels(f"pixel frame has {len(frames[0])} bytes; a {width}x{height} {fmt['dtype']} "
                                 f"{fmt['channels']} image needs {expected}")
    if has_mask and len(frames[1]) != width * height:
        raise protocol.BadPixels(f"mask frame has {len(frames[1])} bytes; a {width}x{height} u8 mask needs "
                                 f"{width * height}")
    header["format"] = fmt
    return width, height, fmt


def _check_switches(header, *keys):
    """Options that are switches must be JSON booleans (a string such as "no" is not false)."""
    for key in keys:
        if not isinstance(header.get(key, False), bool):
            raise protocol.BadRequest(f"{key!r} must be true or false, got {header[key]!r}"[:200])


def _check_stylize(header, frames, limits, store):
    check_image_request(header, frames, limits["max_pixels"])
    if not isinstance(header.get("model"), str):
        raise protocol.BadRequest("'model' (the style model's name) must be a string")
    strength = header.get("strength", 1.0)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise protocol.BadRequest(f"'strength' must be a number from 0 to 1, got {strength!r}")
    _check_switches(header, "preserve_colors")


def _check_upscale(header, frames, limits, store):
    """Resolve the SR model that will run (the named one, else the first for ``scale``) and check the
    output size against its scale: a request's ``scale`` must not understate the model's."""
    width, height, _ = check_image_request(header, frames, limits["max_pixels"])
    _check_switches(header, "histogram_match")
    model = header.get("model")
    if model is not None and not isinstance(model, str):
        raise protocol.BadRequest("'model' must be a string or null")
    scale = _positive_int(header, "scale") if header.get("scale") is not None else None
    info = store.resolve_sr(model, scale, refresh=False)
    header["model"], header["scale"] = info.name, info.scale
    _check_output_size(width, height, info.scale, limits["max_pixels"])


def _check_output_size(width, height, scale, max_pixels):
    if width * height * scale * scale > max_pixels:
        raise protocol.TooLarge(f"x{scale} of {width}x{height} would be {width * height * scale * scale} pixels; "
                                f"this daemon makes at most {max_pixels} (brushwork serve --max-pixels)")


# ---- job kinds: each is a check (loop thread) and a run function (worker thread) ------

def _decode_job_image(job):
    header = job.header
    width, height = header["width"], header["height"]
    rgb, alpha = pixels.decode(job.frames[0].buffer, width, height, header["format"])
    mask = pixels.decode_mask(job.frames[1].buffer, width, height) if header.get("mask") else None
    return rgb, alpha, mask


def _image_result(rgb, alpha, fmt):
    out = pixels.encode(rgb, alpha, fmt)
    height, width = out.shape[:2]
    return {"kind": "result", "width": width, "height": height, "format": fmt}, [out]


def run_stylize(engine, job, progress, is_cancelled):
    rgb, alpha, mask = _decode_job_image(job)
    h = job.header
    rgb, alpha = engine.stylize(rgb, alpha, model=h["model"], strength=float(h.get("strength", 1.0)),
                                preserve_colors=bool(h.get("preserve_colors", False)), mask=mask,
                                progress=progress, is_cancelled=is_cancelled)
    return _image_result(rgb, alpha, h["format"])


def run_upscale(engine, job, progress, is_cancelled):
    h = job.header
    if engine.store.get(h["model"]).scale != h["scale"]:   # the model's file changed since the check
        raise protocol.BadRequest(f"model {h['model']!r} changed while the request waited; send it again")
    rgb, alpha, mask = _decode_job_image(job)
    rgb, alpha = engine.upscale(rgb, alpha, model=h.get("model"), scale=h["scale"],
                                histogram_match=bool(h.get("histogram_match", False)), mask=mask,
                                progress=progress, is_cancelled=is_cancelled)
    return _image_result(rgb, alpha, h["format"])


# kind -> (check(header, frames, limits, store) in the loop, run(engine, job, progress, is_cancelled) in the worker).
# Adding a job kind for the worker means adding one entry here ("train_style" runs beside it instead).
JOB_KINDS = {
    "stylize": (_check_stylize, run_stylize),
    "upscale": (_check_upscale, run_upscale),
}


# ---- info ------------------------------------------------------------------------------

MAX_INFO_PROBLEMS = 200   # problems listed in one `info` reply


def fit_info_reply(reply, limit=protocol.MAX_INFO_BYTES):
    """``reply`` made to encode in at most ``limit`` bytes: thumbnails, then recipes and data, then
    models from the end of the list are left out until it fits, and ``left_out`` says what was."""
    def size():
        return len(protocol.encode_header(reply))

    steps = (("thumbnails", ("thumbnail_png",)), ("thumbnails, recipes and data", ("recipe", "data")))
    for what, keys in steps:
        if size() <= limit:
            return reply
        for entry in reply["models"]:
            for key in keys:
                entry.pop(key, None)
        reply["left_out"] = f"{what} (this reply would exceed {limit} bytes)"
    total = len(reply["models"])
    while size() > limit and reply["models"]:
        del reply["models"][len(reply["models"]) // 2:]
    if len(reply["models"]) < total:
        reply["left_out"] = (f"recipes, data, thumbnails and {total - len(reply['models'])} of {total} models "
                             f"(this reply would exceed {limit} bytes)")
    return reply


# ---- endpoints ------------------------------------------------------------------------

def tcp_endpoint(spec):
    """``--tcp`` value ``[HOST:]PORT`` (or empty) -> ``tcp://HOST:PORT`` (default 127.0.0.1:5557)."""
    spec = (spec or "").strip()
    if ":" in spec and not spec.endswith("]"):
        host, _, port = spec.rpartition(":")
    else:  # a port alone, or a host alone
        host, port = ("", spec) if spec.isdigit() else (spec, "")
    host = host.strip("[]")
    host = "127.0.0.1" if host in ("", "localhost") else host
    port = port or str(protocol.DEFAULT_TCP_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BrushworkError(f"bad TCP port {port!r} in --tcp {spec!r}; expected [HOST:]PORT", "bad_request")
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
            raise BrushworkError("IPC endpoint needs a socket path: ipc:///path/to/daemon.sock", "bad_request")
        if endpoint.startswith("ipc://@") and not authenticated:
            raise BrushworkError(f"refusing to listen on {endpoint} without authentication: an abstract socket "
                                 "(a name starting with '@') has no file permissions, so every local user could "
                                 "use this daemon. Use a socket path (ipc:///path/daemon.sock), or keys",
                                 "bad_request")
        return
    if not endpoint.startswith("tcp://"):
        raise BrushworkError(f"unsupported endpoint {endpoint!r}: use ipc://PATH or tcp://HOST:PORT", "bad_request")
    if not authenticated and not is_loopback(endpoint):
        raise BrushworkError(f"refusing to listen on {endpoint} without authentication: other machines could use "
                             "this daemon. Create keys (`brushwork keys server`, `brushwork keys client NAME`, "
                             "`brushwork keys allow NAME.key`) and serve with --server-key/--allow (see "
                             "docs/security.md), or listen on a loopback address (127.0.0.1) and use an SSH tunnel",
                             "bad_request")


def refuse_if_running(context, endpoint):
    """Raise BrushworkError if a daemon already answers at ``endpoint`` (never steal its socket)."""
    other = daemon_answering(context, endpoint)
    if other is not None:
        raise BrushworkError(f"a brushwork daemon (version {other.get('version', '?')}) is already running at "
                             f"{endpoint}; stop it first or choose another --endpoint", "unavailable")


def daemon_answering(context, endpoint, timeout=0.5):
    """The ``pong`` header of a daemon already answering at ``endpoint``, or None."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(endpoint)
        socket.send(protocol.encode_header({"kind": "ping", "id": "startup-check"}), zmq.NOBLOCK)
        if socket.poll(timeout * 1000):
            return protocol.decode_header(socket.recv())
    except (zmq.ZMQError, BrushworkError):
        pass
    finally:
        socket.close()
    return None


def _unix_socket_in_use(path):
    """True if something accepts connections on the Unix socket ``path`` (binding would take it over)."""
    import socket
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


# ---- the daemon -----------------------------------------------------------------------

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
                raise BrushworkError(f"{name} must be at least 1, got {value}", "bad_request")
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
                self._bind_ipc(router)
            else:
                router.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self._close_unbound(router)
            raise BrushworkError(f"cannot listen on {self.endpoint}: {exc}", "unavailable") from None
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

    def _bind_ipc(self, router):
        path = self.endpoint[len("ipc://"):]
        if path.startswith("@"):   # Linux's abstract namespace: no file to create, protect or remove
            router.bind(self.endpoint)
            return
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        if directory == os.path.abspath(protocol.runtime_dir()):
            if os.stat(directory).st_uid != os.getuid():
                raise BrushworkError(f"{directory} belongs to another user; refusing to put the socket there",
                                     "unavailable")
            os.chmod(directory, 0o700)
        if _unix_socket_in_use(path):  # e.g. a daemon with keys, which did not answer our key-less ping
            raise BrushworkError(f"another program is listening on {path}; stop it first or choose another "
                                 "--endpoint", "unavailable")
        old_umask = os.umask(0o177)  # the socket file is created 0600
        try:
            router.bind(self.endpoint)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._socket_file = (path, os.stat(path).st_ino)

    def stop(self):
        """Ask the loop to shut down (safe from signal handlers and other threads)."""
        self._stop.set()

    def serve(self):
        """Run until stop(): bind if needed, start the worker, route messages, then clean up."""
        if self._router is None:
            self.bind()
        self.store.refresh()
        worker = threading.Thread(target=self._work, name="brushwork-worker", daemon=True)
        worker.start()
        threading.Thread(target=self._watch_models, name="brushwork-models", daemon=True).start()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._replies, zmq.POLLIN)
        if self._guard is not None:
            poller.register(self._guard.socket, zmq.POLLIN)
        next_heartbeat = time.monotonic() + HEARTBEAT_S
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
                        next_heartbeat = time.monotonic() + HEARTBEAT_S
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
        self.trainings.close()  # stops the trainer processes
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
            path, inode = self._socket_file
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass

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
                total = sum(len(frame) for frame in frames)
                if total > self.limits["max_bytes"]:
                    raise protocol.TooLarge(f"request is {total} bytes; this daemon accepts at most "
                                            f"{self.limits['max_bytes']} (brushwork serve --max-bytes)")
                self._handle(identity, header, frames[1:])
            except BrushworkError as exc:
                log.debug("request %s refused: %s: %s", request_id, exc.code, exc.message)
                self._send_error(identity, request_id, exc)
            except Exception:
                log.exception("internal error handling request %s", request_id)
                self._send_error(identity, request_id,
                                 BrushworkError("internal error in the daemon; see its log", "internal"))

    def _handle(self, identity, header, frames):
        request_id, kind = header.get("id"), header.get("kind")
        if not isinstance(request_id, str) or not request_id:
            raise protocol.BadRequest("the header needs an 'id' string chosen by the client")
        if header.get("v", protocol.PROTOCOL_VERSION) != protocol.PROTOCOL_VERSION:
            raise protocol.BadRequest(f"protocol version {header.get('v')!r} not supported; this daemon speaks "
                                      f"version {protocol.PROTOCOL_VERSION}")
        if not isinstance(kind, str):
            raise protocol.BadRequest(f"'kind' must be a string naming the request, got {kind!r}")
        log.debug("request %s: %s", request_id, kind)
        immediate = {"ping": self._ping, "info": self._info, "echo": self._echo, "cancel": self._cancel}
        if kind in immediate:
            immediate[kind](identity, header, frames)
        elif kind in JOB_KINDS:
            check, _ = JOB_KINDS[kind]
            check(header, frames, self.limits, self.store)
            job = Job(identity, header, frames)
            ahead = self.queue.put(job)
            self._send(identity, {"kind": "progress", "id": request_id, "done": 0, "total": 0,
                                  "message": waiting_message(ahead) if ahead else "starting"})
        elif kind == "train_style":
            check_image_request(header, frames, self.limits["max_pixels"], allow_mask=False)
            self.trainings.start(identity, header, frames)
        else:
            raise protocol.UnknownKind(f"unknown message kind {kind!r}; this daemon handles "
                                       f"{', '.join(['ping', 'info', 'echo', 'cancel', *JOB_KINDS, 'train_style'])}")

    def _ping(self, identity, header, frames):
        self._send(identity, {"kind": "pong", "id": header["id"], "version": __version__,
                              "protocol": protocol.PROTOCOL_VERSION})

    def _info(self, identity, header, frames):
        """Models (with thumbnails if asked), problems and limits, in at most MAX_INFO_BYTES: what does
        not fit is left out (thumbnails first, then recipes and data, then models) and ``left_out`` says so.
        Server paths are sent only to clients on this machine's IPC socket."""
        local = self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@")
        models = []
        for model in self.store.list(refresh=False):
            entry = model.summary()
            if not local:
                entry["path"] = model.json_path.name
            if header.get("thumbnails") is True and model.thumbnail_path is not None:
                try:
                    png = read_regular_file(model.thumbnail_path, MAX_THUMBNAIL_BYTES)
                    entry["thumbnail_png"] = base64.b64encode(png).decode("ascii")
                except BrushworkError:
                    pass
            models.append(entry)
        problems = [p if local else os.path.basename(p.partition(": ")[0]) + ": " + p.partition(": ")[2]
                    for p in self.store.problems]
        reply = {"kind": "info", "id": header["id"], "version": __version__, "protocol": protocol.PROTOCOL_VERSION,
                 "device": self.engine.device, "precision": self.engine.precision, "models": models,
                 "problems": problems[:MAX_INFO_PROBLEMS], "limits": self.limits,
                 "training": self.trainings.describe()}
        if len(problems) > MAX_INFO_PROBLEMS:
            reply["problems"].append(f"... and {len(problems) - MAX_INFO_PROBLEMS} more problems")
        self._send(identity, fit_info_reply(reply))

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

    # -- worker side

    def _work(self):
        replies = self._context.socket(zmq.PUSH)
        replies.connect(self._reply_endpoint)
        try:
            while True:
                job = self.queue.take()
                if job is None:
                    return
                try:
                    self._run(job, replies)
                finally:
                    self.queue.finish(job)
                    _return_free_memory(0)
        finally:
            replies.close(linger=-1)

    def _run(self, job, replies):
        def send(header, frames=()):
            header = dict(header, id=job.id)
            replies.send_multipart([job.identity, protocol.encode_header(header), *frames], copy=False)

        def progress(done, total):
            job.done, job.total = int(done), int(total)
            send({"kind": "progress", "done": job.done, "total": job.total})

        def is_cancelled():
            return job.cancelled.is_set()

        started = time.monotonic()
        try:
            if job.cancelled.is_set():
                raise protocol.Cancelled("cancelled")
            header, frames = JOB_KINDS[job.kind][1](self.engine, job, progress, is_cancelled)
            send(header, frames)
            log.info("%s %s done in %.2f s", job.kind, job.id, time.monotonic() - started)
        except BrushworkError as exc:
            log.info("%s %s failed at step %d of %d: %s: %s", job.kind, job.id, job.done, job.total, exc.code,
                     exc.message)
            send({"kind": "error", "code": exc.code, "message": exc.message})
        except MemoryError:
            log.warning("%s %s ran out of memory", job.kind, job.id)
            send({"kind": "error", "code": "out_of_memory", "message": "the daemon ran out of memory for this "
                  "image; try a smaller one or close other programs"})
        except Exception:
            log.exception("internal error in %s job %s", job.kind, job.id)
            send({"kind": "error", "code": "internal", "message": "internal error in the daemon; see its log"})
        finally:
            job.frames = None  # release the request's buffers
