"""Client for the brushwork daemon: one ZeroMQ DEALER socket, one request at a time.

Needs only pyzmq and the standard library, so the editor plug-ins can vendor this file
together with ``protocol.py`` and ``managed_daemon.py`` and run it in Krita's or GIMP's Python
(3.11-3.14).

    client = Client()                       # the local daemon at protocol.default_endpoint()
    r = client.stylize(pixels, w, h, {"dtype": "u8", "channels": "BGRA"}, "starry_night")
    r.check(w, h, {"dtype": "u8", "channels": "BGRA"})   # before the result goes into a document
    r.pixels, r.width, r.height             # same pixel format as sent

A daemon the plug-in starts itself is a ``managed_daemon.ManagedDaemon``; a Client given it as
``daemon`` stops waiting the moment that process exits.

A daemon on another machine needs CURVE keys (docs/security.md): the server's public key
file and this client's secret key file, as ``brushwork keys`` writes them:

    client = Client("tcp://studio:5557", server_key="server.key", client_key="laptop.key_secret")

See docs/protocol.md for the messages exchanged.
"""

import os
import time

import zmq
import zmq.auth

try:
    from . import protocol
except ImportError:  # vendored next to protocol.py as top-level modules
    import protocol

POLL_INTERVAL_S = 0.1  # how often should_cancel() is asked (and a managed daemon checked) while waiting
# The daemon re-sends a job's progress every HEARTBEAT_S (docs/protocol.md), so once it has
# answered, this much silence means it is gone, however long the job.
KEEPALIVE_TIMEOUT_S = 3 * protocol.HEARTBEAT_S


def load_curve_keys(server_key, client_key):
    """(server public, client public, client secret) Z85 keys from key files, or None when neither
    file is given; BadRequest naming the file when one is missing, unreadable or the wrong kind."""
    if not server_key and not client_key:
        return None
    if not (server_key and client_key):
        raise protocol.BadRequest("CURVE keys come in pairs: give both the server's public key file and this "
                                  "client's secret key file, or neither")
    if not zmq.has("curve"):
        raise protocol.BadRequest(f"this libzmq ({zmq.zmq_version()}) has no CURVE support, so keys cannot be used")
    server_public, _ = _read_key_file(server_key, "the server's public key")
    client_public, client_secret = _read_key_file(client_key, "this client's secret key")
    if client_secret is None:
        raise protocol.BadRequest(f"{client_key} holds only a public key; give this client's .key_secret file")
    return server_public, client_public, client_secret


def _read_key_file(path, what):
    try:
        return zmq.auth.load_certificate(os.path.expanduser(path))
    except (OSError, ValueError) as exc:
        raise protocol.BadRequest(f"cannot read {what} from {path}: {exc}") from None


class Result:
    """A finished image: ``pixels`` (bytes-like, in ``format``), ``width``, ``height``, full reply ``header``."""

    def __init__(self, header, pixels):
        self.header = header
        self.pixels = pixels
        self.width = header.get("width")
        self.height = header.get("height")
        self.format = header.get("format")

    def check(self, width, height, fmt):
        """Raise BadPixels unless this is the image asked for: ``width`` x ``height`` in format
        ``fmt``, with exactly the bytes those need. A plug-in calls it before the result
        touches a document, so a bad reply never reaches the editor's buffers."""
        fmt = protocol.validate_format(fmt)
        if self.format != fmt:
            raise protocol.BadPixels(f"the daemon returned pixels in the format {self.format}; expected {fmt}")
        if (self.width, self.height) != (width, height):
            raise protocol.BadPixels(f"the daemon returned a {self.width}x{self.height} image; "
                                     f"expected {width}x{height}")
        expected, size = protocol.frame_size(width, height, fmt), memoryview(self.pixels).nbytes
        if size != expected:
            raise protocol.BadPixels(f"the daemon returned {size} bytes for a {width}x{height} image; "
                                     f"expected {expected}")


def _image_fields(pixels, width, height, fmt):
    """The header fields describing ``pixels``; raises BadPixels if its size does not match."""
    fmt = protocol.validate_format(fmt)
    expected = protocol.frame_size(width, height, fmt)
    size = memoryview(pixels).nbytes
    if size != expected:
        raise protocol.BadPixels(f"pixel buffer has {size} bytes; a "
                                 f"{width}x{height} {fmt['dtype']} {fmt['channels']} image needs {expected}")
    return {"width": int(width), "height": int(height), "format": fmt}


class Client:
    """Talks to one daemon endpoint. Use a Client from one thread at a time.

    ``timeout`` is the longest silence (seconds) tolerated while waiting for a reply; the
    daemon sends progress and keep-alive messages during long jobs, so it does not bound
    the total job time. After a timeout the socket is reset and the next call reconnects.
    ``server_key`` and ``client_key`` name CURVE key files (see :func:`load_curve_keys`);
    a daemon that does not know them never answers, so calls time out as Unavailable.
    Once the daemon has answered a request, ``keepalive_timeout`` seconds without its
    keep-alive end the wait (TimedOut). ``daemon``: a ``managed_daemon.ManagedDaemon`` (anything
    with ``exit_message()``) whose exit ends any wait within ``POLL_INTERVAL_S`` (Unavailable).
    """

    def __init__(self, endpoint=None, timeout=30.0, context=None, server_key=None, client_key=None,
                 keepalive_timeout=KEEPALIVE_TIMEOUT_S, daemon=None):
        self.endpoint = endpoint or protocol.default_endpoint()
        self.timeout = float(timeout)
        self.keepalive_timeout = float(keepalive_timeout)
        self.daemon = daemon
        self._context = context or zmq.Context.instance()
        self._curve = load_curve_keys(server_key, client_key)
        self._socket = None

    def close(self):
        """Drop the connection (a later call opens a new one)."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- requests -------------------------------------------------------------------

    def ping(self, timeout=None):
        """Round-trip time to the daemon in seconds; raises Unavailable if none answers within
        ``timeout`` seconds (default: the client's ``timeout``)."""
        saved = self.timeout
        self.timeout = saved if timeout is None else float(timeout)
        try:
            start = time.monotonic()
            self._call({"kind": "ping"})
            return time.monotonic() - start
        finally:
            self.timeout = saved

    def info(self, thumbnails=False):
        """Daemon version, device, precision, models, model problems and limits (a dict)."""
        reply, _ = self._call({"kind": "info", "thumbnails": bool(thumbnails)})
        return {k: v for k, v in reply.items() if k not in ("v", "id", "kind")}

    def stylize(self, pixels, width, height, fmt, model, strength=1.0, preserve_colors=False,
                mask=None, progress=None, should_cancel=None):
        """Apply style model ``model`` to an image; returns a Result in the same format."""
        header = {"kind": "stylize", "model": model, "strength": float(strength),
                  "preserve_colors": bool(preserve_colors)}
        return self._image_call(header, pixels, width, height, fmt, mask, progress, should_cancel)

    def upscale(self, pixels, width, height, fmt, scale=4, model=None, histogram_match=False,
                mask=None, progress=None, should_cancel=None):
        """Super-resolve an image by ``scale`` (``model=None``: the daemon picks one for that scale;
        ``scale=None`` with a model: that model's scale). A scale the model does not have is refused."""
        header = {"kind": "upscale", "model": model, "histogram_match": bool(histogram_match),
                  **({} if scale is None else {"scale": int(scale)})}
        return self._image_call(header, pixels, width, height, fmt, mask, progress, should_cancel)

    def echo(self, pixels, width, height, fmt):
        """Send an image and get it back unchanged: measures the protocol's own cost."""
        return self._image_call({"kind": "echo"}, pixels, width, height, fmt, None, None, None)

    def train_style(self, pixels, width, height, fmt, name, display_name=None, progress=None,
                    should_cancel=None, should_stop=None, **options):
        """Train a new style model on the daemon from a style image (e.g. a selection); returns
        the model's summary, as listed by :meth:`info`. Takes minutes to hours: ``progress(done,
        total, message)`` counts iterations; once ``should_stop()`` is true the training ends early
        and the model keeps what it has learnt (``should_cancel``: nothing is kept). ``options``:
        content (a folder on the daemon's machine) and the training options of
        ``protocol.TRAIN_OPTIONS`` (None = the daemon's default; see docs/protocol.md)."""
        reply = self._train_call(pixels, width, height, fmt, name, display_name, progress, should_cancel,
                                 should_stop, options)
        model = reply.get("model")
        if not isinstance(model, dict):
            raise protocol.BrushworkError("the daemon's train_style result has no model", "internal")
        return model

    def train_style_and_lite(self, pixels, width, height, fmt, name, display_name=None, progress=None,
                             should_cancel=None, should_stop=None, lite=True, **options):
        """:meth:`train_style`, then a lite version of the new style distilled from it (``lite``:
        true, or a dict of ``protocol.DISTILL_OPTIONS``), in one request: progress messages name the
        phase. Returns ``(style, lite_model, lite_error)``: the style's summary, then the lite net's
        summary or None, and when it is None the BrushworkError that stopped the lite version
        (cancelled, say): a style already saved is kept."""
        reply = self._train_call(pixels, width, height, fmt, name, display_name, progress, should_cancel,
                                 should_stop, dict(options, lite=lite))
        model, lite_model, failure = reply.get("model"), reply.get("lite_model"), reply.get("lite_error")
        if not isinstance(model, dict) or not (isinstance(lite_model, dict) or isinstance(failure, dict)):
            raise protocol.BrushworkError("the daemon's train_style result has no model and lite version", "internal")
        error = None if lite_model else protocol.error_from_code(failure.get("code"), str(failure.get("message")))
        return model, lite_model if isinstance(lite_model, dict) else None, error

    def distill(self, teacher, name=None, display_name=None, progress=None, should_cancel=None, should_stop=None,
                **options):
        """Make a lite (smaller, faster) version of the installed style model ``teacher`` on the
        daemon, named ``name`` (default: the teacher's + '_lite'); returns its summary. ``options``:
        content (a folder on the daemon's machine) and ``protocol.DISTILL_OPTIONS`` (None = the
        daemon's default). Progress, cancel and stop as for :meth:`train_style`."""
        header = {"kind": "distill", "teacher": teacher, "name": name, "display_name": display_name, **options}
        reply, _ = self._call({k: v for k, v in header.items() if v is not None}, [], progress, should_cancel,
                              should_stop)
        model = reply.get("model")
        if not isinstance(model, dict):
            raise protocol.BrushworkError("the daemon's distill result has no model", "internal")
        return model

    def estimate_training(self, pixels, width, height, fmt, name, progress=None, should_cancel=None, **options):
        """How long :meth:`train_style` with the same arguments would take on the daemon's device,
        measured there (seconds the first time, then remembered): a dict with ``s_per_iteration``,
        ``iterations``, ``seconds``, ``hardware`` and ``photos`` (in the content folder)."""
        reply = self._train_call(pixels, width, height, fmt, name, None, progress, should_cancel, None,
                                 dict(options, estimate=True))
        estimate = reply.get("estimate")
        if not isinstance(estimate, dict) or not isinstance(estimate.get("s_per_iteration"), (int, float)):
            raise protocol.BrushworkError("the daemon's estimate has no speed", "internal")
        return estimate

    def _train_call(self, pixels, width, height, fmt, name, display_name, progress, should_cancel, should_stop,
                    options):
        header = {"kind": "train_style", "name": name, "display_name": display_name, **options}
        header = {k: v for k, v in header.items() if v is not None}
        header.update(_image_fields(pixels, width, height, fmt))
        reply, _ = self._call(header, [pixels], progress, should_cancel, should_stop)
        return reply

    # ---- plumbing -------------------------------------------------------------------

    def _image_call(self, header, pixels, width, height, fmt, mask, progress, should_cancel):
        header.update(_image_fields(pixels, width, height, fmt), mask=mask is not None)
        frames = [pixels] if mask is None else [pixels, mask]
        reply, frames = self._call(header, frames, progress, should_cancel)
        if len(frames) != 1:
            raise protocol.BrushworkError(f"daemon sent {len(frames)} pixel frames instead of 1", "internal")
        return Result(reply, frames[0])

    def _connect(self):
        if self._socket is None:
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            if self._curve is not None:
                socket.curve_serverkey, socket.curve_publickey, socket.curve_secretkey = self._curve
            try:
                socket.connect(self.endpoint)
            except zmq.ZMQError as exc:
                socket.close()
                raise protocol.Unavailable(f"cannot connect to {self.endpoint!r}: {exc}") from None
            self._socket = socket
        return self._socket

    def _unavailable(self):
        self.close()
        if self._curve is not None:
            hint = ("is it running there, is the server key file its public key, and is this client's public "
                    "key on its allow-list (`brushwork keys allow`)?")
        else:
            hint = "start it with `brushwork serve` (a daemon on another machine also needs keys)"
        return protocol.Unavailable(f"no brushwork daemon answering at {self.endpoint}; {hint}")

    def _send(self, frames):
        socket = self._connect()
        if not socket.poll(self.timeout * 1000, zmq.POLLOUT):
            raise self._unavailable()
        socket.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)

    def _call(self, header, frames=(), progress=None, should_cancel=None, should_stop=None):
        """Send one request and wait for its final reply: (reply header, list of frame buffers)."""
        request_id = protocol.new_request_id()
        header = dict(header, v=protocol.PROTOCOL_VERSION, id=request_id)
        self._send([protocol.encode_header(header), *frames])
        return self._wait(request_id, progress, should_cancel, should_stop)

    def _ask(self, callback, request_id, *args):
        """Run a caller's callback; if it raises, cancel the daemon's job before passing the error on."""
        try:
            return callback(*args)
        except BaseException:
            self._send_cancel(request_id)
            raise

    def _send_cancel(self, request_id, keep=False):
        header = {"kind": "cancel", "id": protocol.new_request_id(), "target": request_id,
                  **({"keep": True} if keep else {})}
        try:
            self._socket.send_multipart([protocol.encode_header(header)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _wait(self, request_id, progress, should_cancel, should_stop=None):
        socket = self._socket
        last_heard = time.monotonic()
        heard_anything = cancel_sent = stop_sent = False
        while True:
            gone = self.daemon.exit_message() if self.daemon is not None else None
            if gone:
                self.close()
                raise protocol.Unavailable(gone)
            if should_cancel is not None and not cancel_sent and self._ask(should_cancel, request_id):
                self._send_cancel(request_id)
                cancel_sent = True
                last_heard = time.monotonic()  # give the daemon a full timeout to confirm
            if should_stop is not None and not (stop_sent or cancel_sent) and self._ask(should_stop, request_id):
                self._send_cancel(request_id, keep=True)   # a training: end early, keep the model
                stop_sent = True
            if socket.poll(POLL_INTERVAL_S * 1000):
                message = socket.recv_multipart(copy=False)
                if len(message[0]) > protocol.MAX_REPLY_HEADER_BYTES:
                    self.close()   # its request cannot be told; it is most likely this one
                    raise protocol.TooLarge(f"the daemon at {self.endpoint} sent a reply of {len(message[0])} bytes; "
                                            f"this client accepts at most {protocol.MAX_REPLY_HEADER_BYTES}, so it "
                                            "refused it")
                try:
                    reply = protocol.decode_header(message[0].bytes, protocol.MAX_REPLY_HEADER_BYTES)
                except protocol.BrushworkError:
                    continue
                if reply.get("id") != request_id:
                    continue  # a stale reply to an earlier request, or the "ok" to our cancel
                last_heard = time.monotonic()
                heard_anything = True
                kind = reply.get("kind")
                if kind == "progress":
                    if progress is not None:
                        self._ask(progress, request_id, int(reply.get("done", 0)), int(reply.get("total", 0)),
                                  str(reply.get("message", "")))
                    continue
                if kind == "error":
                    raise protocol.error_from_code(reply.get("code"), reply.get("message", "unknown error"))
                if cancel_sent and "lite_error" not in reply:   # (a style saved before its lite version is kept)
                    raise protocol.Cancelled("cancelled")
                return reply, [frame.buffer for frame in message[1:]]
            silence = time.monotonic() - last_heard
            if cancel_sent:
                if silence > self.timeout:
                    self.close()
                    raise protocol.Cancelled("cancelled (the daemon did not confirm in time)")
            elif heard_anything:
                limit = min(self.timeout, self.keepalive_timeout)
                if silence > limit:
                    self.close()
                    raise protocol.TimedOut(f"the brushwork daemon at {self.endpoint} stopped answering "
                                            f"(no keep-alive for {limit:g} s); is it still running?")
            elif silence > self.timeout:
                raise self._unavailable()

