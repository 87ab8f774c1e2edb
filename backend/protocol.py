"""brushwork wire protocol: constants, error codes and pixel-format arithmetic.

Pure standard library on purpose: the editor plug-ins vendor this file next to
``client.py`` and run it inside Krita's or GIMP's own Python (3.10-3.13).
See docs/protocol.md for the message layout.
"""

import json
import os
import sys
import tempfile
import uuid

PROTOCOL_VERSION = 1
DEFAULT_TCP_PORT = 5557

# Message kinds. Requests go client -> daemon, replies daemon -> client.
REQUEST_KINDS = ("ping", "info", "stylize", "upscale", "echo", "cancel", "train_style")
REPLY_KINDS = ("pong", "info", "progress", "result", "error", "ok")

# Default daemon limits (configurable with `brushwork serve --max-pixels/--max-bytes/--queue`).
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024     # per image, input and output
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024    # all frames of one request together
DEFAULT_QUEUE = 16                        # jobs waiting for the worker, all clients together
MAX_HEADER_BYTES = 64 * 1024              # request headers (the daemon's limit)
MAX_REPLY_HEADER_BYTES = 16 * 1024 * 1024  # reply headers a client accepts: `info` with thumbnails can be large
MAX_INFO_BYTES = 8 * 1024 * 1024          # what the daemon puts in one `info` reply (it leaves out the rest)
HEARTBEAT_S = 2.0                         # the daemon re-sends each waiting job's progress this often

DTYPE_SIZES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
CHANNEL_ORDERS = ("RGBA", "BGRA", "RGB", "BGR")
TRANSFERS = ("srgb", "linear")

ERROR_CODES = (
    "bad_request",     # malformed header, missing/invalid field
    "unknown_kind",    # message kind the daemon does not know
    "unknown_model",   # no model of that name (or none for that scale)
    "bad_pixels",      # pixel frame does not match the declared size/format
    "too_large",       # over the daemon's pixel or byte limits
    "busy",            # queue full, try again later
    "cancelled",       # the job was cancelled by its client
    "model_error",     # a model file is corrupt or does not match its metadata
    "out_of_memory",   # the device ran out of memory even with the smallest tiles
    "io_error",        # the daemon could not write (or read) a file it needs, e.g. its disk is full
    "timeout",         # the client gave up waiting
    "unavailable",     # no daemon answering at the endpoint
    "internal",        # a bug: the daemon logged a traceback
)


class BrushworkError(Exception):
    """An error with a machine-readable ``code`` (one of ERROR_CODES) and a human ``message``."""

    code = "internal"

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return self.message


class BadRequest(BrushworkError):
    code = "bad_request"


class UnknownKind(BrushworkError):
    code = "unknown_kind"


class UnknownModel(BrushworkError):
    code = "unknown_model"


class BadPixels(BrushworkError):
    code = "bad_pixels"


class TooLarge(BrushworkError):
    code = "too_large"


class Busy(BrushworkError):
    code = "busy"


class Cancelled(BrushworkError):
    code = "cancelled"


class ModelError(BrushworkError):
    code = "model_error"


class OutOfMemory(BrushworkError):
    code = "out_of_memory"


class IOFailure(BrushworkError):
    code = "io_error"


class Unavailable(BrushworkError):
    """No daemon answered (code ``unavailable``) or it went silent mid-job (``timeout``)."""

    code = "unavailable"


class TimedOut(Unavailable):
    code = "timeout"


_ERROR_CLASSES = {cls.code: cls for cls in (BadRequest, UnknownKind, UnknownModel, BadPixels, TooLarge, Busy,
                                            Cancelled, ModelError, OutOfMemory, IOFailure, Unavailable, TimedOut)}


def error_from_code(code, message):
    """The exception for an ``error`` reply: the matching subclass, else a plain BrushworkError."""
    cls = _ERROR_CLASSES.get(code)
    if cls is None:
        return BrushworkError(message, code if code in ERROR_CODES else "internal")
    return cls(message)


def new_request_id():
    """A fresh request id, unique enough that stale replies can never be mistaken for current ones."""
    return uuid.uuid4().hex


def encode_header(header):
    """A header dict as the UTF-8 JSON bytes of frame 0 (``v`` is added when missing)."""
    header = dict(header)
    header.setdefault("v", PROTOCOL_VERSION)
    return json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_header(data, limit=MAX_HEADER_BYTES):
    """Parse frame 0 into a dict; raise BrushworkError('bad_request') if it is not a JSON object
    or is longer than ``limit`` bytes."""
    data = bytes(data)
    if len(data) > limit:
        raise BadRequest(f"header frame is {len(data)} bytes; at most {limit} allowed")
    try:
        header = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("header frame is not UTF-8 JSON") from None
    except RecursionError:
        raise BadRequest("header frame nests JSON too deeply") from None
    if not isinstance(header, dict):
        raise BadRequest("header frame must be a JSON object")
    try:
        encode_header(header)   # its strings can be sent back in replies
    except UnicodeEncodeError:
        raise BadRequest("header frame holds an unpaired UTF-16 surrogate escape (\\udXXX)") from None
    return header


def validate_format(fmt):
    """Check a pixel-format dict and return it normalised; raise BrushworkError('bad_request')."""
    if not isinstance(fmt, dict):
        raise BrushworkError("format must be an object with dtype, channels and transfer", "bad_request")
    dtype = fmt.get("dtype")
    channels = fmt.get("channels", "RGBA")
    transfer = fmt.get("transfer", "srgb")
    for key, value in (("dtype", dtype), ("channels", channels), ("transfer", transfer)):
        if not isinstance(value, str):
            raise BrushworkError(f"format {key} must be a string, got {value!r}"[:200], "bad_request")
    if dtype not in DTYPE_SIZES:
        raise BrushworkError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_SIZES)}", "bad_request")
    if channels not in CHANNEL_ORDERS:
        raise BrushworkError(f"unknown channel order {channels!r}; expected one of {list(CHANNEL_ORDERS)}",
                             "bad_request")
    if transfer not in TRANSFERS:
        raise BrushworkError(f"unknown transfer {transfer!r}; expected one of {list(TRANSFERS)}", "bad_request")
    return {"dtype": dtype, "channels": channels, "transfer": transfer}


def frame_size(width, height, fmt):
    """Number of bytes of a ``width`` x ``height`` image in pixel format ``fmt``."""
    fmt = validate_format(fmt)
    return int(width) * int(height) * len(fmt["channels"]) * DTYPE_SIZES[fmt["dtype"]]


def runtime_dir():
    """Per-user directory for the daemon's socket (owner-only)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "brushwork")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"brushwork-{uid}")


def default_endpoint():
    """The endpoint a local daemon listens on unless told otherwise.

    ``BRUSHWORK_ENDPOINT`` overrides it; otherwise an IPC socket in the user's runtime
    dir on Linux/macOS and loopback TCP elsewhere (Windows has no IPC transport).
    """
    env = os.environ.get("BRUSHWORK_ENDPOINT")
    if env:
        return env
    if sys.platform.startswith("win"):
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORT}"
    return "ipc://" + os.path.join(runtime_dir(), "daemon.sock")


def describe_duration(seconds):
    """A rough, readable duration for time estimates: '40 s', '12 min', '3 h 20 min', '4 days 6 h'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} days {hours} h" if hours else f"{days} days"
