"""Client for the brushwork daemon: one ZeroMQ DEALER socket, one request at a time.

Needs only pyzmq and the standard library, so the editor plug-ins can vendor this file
together with ``protocol.py`` and run it in Krita's or GIMP's Python (3.10-3.13).

    client = Client()                       # the local daemon at protocol.default_endpoint()
    r = client.stylize(pixels, w, h, {"dtype": "u8", "channels": "BGRA"}, "starry_night")
    r.pixels, r.width, r.height             # same pixel format as sent

See docs/protocol.md for the messages exchanged.
"""

import time

import zmq

try:
    from . import protocol
except ImportError:  # vendored next to protocol.py as top-level modules
    import protocol

POLL_INTERVAL_S = 0.1  # how often should_cancel() is asked while waiting


class Result:
    """A finished image: ``pixels`` (bytes-like, in ``format``), ``width``, ``height``, full reply ``header``."""

    def __init__(self, header, pixels):
        self.header = header
        self.pixels = pixels
        self.width = header["width"]
        self.height = header["height"]
        self.format = header["format"]


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
    """

    def __init__(self, endpoint=None, timeout=30.0, context=None):
        self.endpoint = endpoint or protocol.default_endpoint()
        self.timeout = float(timeout)
        self._context = context or zmq.Context.instance()
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

    def ping(self):
        """Round-trip time to the daemon in seconds; raises Unavailable if none answers."""
        start = time.monotonic()
        self._call({"kind": "ping"})
        return time.monotonic() - start

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
        """Super-resolve an image by ``scale`` (``model=None``: the daemon picks one for that scale)."""
        header = {"kind": "upscale", "scale": int(scale), "model": model,
                  "histogram_match": bool(histogram_match)}
        return self._image_call(header, pixels, width, height, fmt, mask, progress, should_cancel)

    def echo(self, pixels, width, height, fmt):
        """Send an image and get it back unchanged: measures the protocol's own cost."""
        return self._image_call({"kind": "echo"}, pixels, width, height, fmt, None, None, None)

    def train_style(self, pixels, width, height, fmt, name, display_name=None, progress=None,
                    should_cancel=None, **options):
        """Train a new style model on the daemon from a style image (e.g. a selection); returns
        the model's summary, as listed by :meth:`info`. Takes minutes to hours: ``progress(done,
        total, message)`` counts iterations. ``options``: iterations, size, style_size, batch, lr,
        seed, content_weight, style_weight, tv_weight, checkpoint_every, channels, blocks
        (None = the daemon's default; see docs/protocol.md)."""
        header = {"kind": "train_style", "name": name, "display_name": display_name, **options}
        header = {k: v for k, v in header.items() if v is not None}
        header.update(_image_fields(pixels, width, height, fmt))
        reply, _ = self._call(header, [pixels], progress, should_cancel)
        model = reply.get("model")
        if not isinstance(model, dict):
            raise protocol.BrushworkError("the daemon's train_style result has no model", "internal")
        return model

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
            try:
                socket.connect(self.endpoint)
            except zmq.ZMQError as exc:
                socket.close()
                raise protocol.Unavailable(f"cannot connect to {self.endpoint!r}: {exc}") from None
            self._socket = socket
        return self._socket

    def _unavailable(self):
        self.close()
        return protocol.Unavailable(f"no brushwork daemon answering at {self.endpoint}; "
                                    f"start it with `brushwork serve`")

    def _send(self, frames):
        socket = self._connect()
        if not socket.poll(self.timeout * 1000, zmq.POLLOUT):
            raise self._unavailable()
        socket.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)

    def _call(self, header, frames=(), progress=None, should_cancel=None):
        """Send one request and wait for its final reply: (reply header, list of frame buffers)."""
        request_id = protocol.new_request_id()
        header = dict(header, v=protocol.PROTOCOL_VERSION, id=request_id)
        self._send([protocol.encode_header(header), *frames])
        return self._wait(request_id, progress, should_cancel)

    def _ask(self, callback, request_id, *args):
        """Run a caller's callback; if it raises, cancel the daemon's job before passing the error on."""
        try:
            return callback(*args)
        except BaseException:
            self._send_cancel(request_id)
            raise

    def _send_cancel(self, request_id):
        header = {"kind": "cancel", "id": protocol.new_request_id(), "target": request_id}
        try:
            self._socket.send_multipart([protocol.encode_header(header)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _wait(self, request_id, progress, should_cancel):
        socket = self._socket
        last_heard = time.monotonic()
        heard_anything = cancel_sent = False
        while True:
            if should_cancel is not None and not cancel_sent and self._ask(should_cancel, request_id):
                self._send_cancel(request_id)
                cancel_sent = True
                last_heard = time.monotonic()  # give the daemon a full timeout to confirm
            if socket.poll(POLL_INTERVAL_S * 1000):
                message = socket.recv_multipart(copy=False)
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
                if cancel_sent:
                    raise protocol.Cancelled("cancelled")
                return reply, [frame.buffer for frame in message[1:]]
            if time.monotonic() - last_heard > self.timeout:
                if cancel_sent:
                    self.close()
                    raise protocol.Cancelled("cancelled (the daemon did not confirm in time)")
                if heard_anything:
                    self.close()
                    raise protocol.TimedOut(f"the brushwork daemon at {self.endpoint} stopped answering "
                                            f"(nothing for {self.timeout:g} s); is it still running?")
                raise self._unavailable()
