"""brushwork wire protocol: constants, error codes, pixel-format arithmetic and the request options
(``strength``, the training options of ``train_style``, the distillation options of ``distill``).

Pure standard library on purpose: the editor plug-ins vendor this file next to
``client.py`` and run it inside Krita's or GIMP's own Python (3.10-3.13).
See docs/protocol.md for the message layout.
"""

import dataclasses
import json
import math
import os
import sys
import tempfile
import uuid

PROTOCOL_VERSION = 1
DEFAULT_TCP_PORT = 5557
SR_SCALES = (2, 4, 8)                   # the upscale factors models, requests and editors know

# Message kinds. Requests go client -> daemon, replies daemon -> client.
REQUEST_KINDS = ("ping", "info", "stylize", "upscale", "echo", "cancel", "train_style", "distill")
REPLY_KINDS = ("pong", "info", "progress", "result", "error", "ok")

# Default daemon limits (configurable with `brushwork serve --max-pixels/--max-bytes/--queue`).
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024     # per image, input and output
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024    # all frames of one request together
DEFAULT_QUEUE = 16                        # jobs waiting for the worker, all clients together
MAX_HEADER_BYTES = 64 * 1024              # request headers (the daemon's limit)
MAX_REPLY_HEADER_BYTES = 16 * 1024 * 1024  # reply headers a client accepts: `info` with thumbnails can be large
MAX_INFO_BYTES = 8 * 1024 * 1024          # what the daemon puts in one `info` reply (it leaves out the rest)
MAX_QUOTE = 200                           # characters of an error message that quotes a request's value
HEARTBEAT_S = 2.0                         # the daemon re-sends each waiting job's progress this often

# Exit statuses of the `brushwork` command and the trainer's (`python -m trainer`, which the daemon runs).
EXIT_ERROR = 1        # failed; the reason is on stderr
EXIT_USAGE = 2        # no command given
EXIT_CANCELLED = 130  # interrupted or cancelled (128 + SIGINT, as shells report it)

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


class InternalError(BrushworkError):
    """A bug on the daemon's side: it logged the traceback and tells the client only where to look."""

    code = "internal"

    def __init__(self, message="internal error in the daemon; see its log"):
        super().__init__(message)


class Unavailable(BrushworkError):
    """No daemon answered (code ``unavailable``) or it went silent mid-job (``timeout``)."""

    code = "unavailable"


class TimedOut(Unavailable):
    code = "timeout"


_ERROR_CLASSES = {cls.code: cls for cls in (BadRequest, UnknownKind, UnknownModel, BadPixels, TooLarge, Busy,
                                            Cancelled, ModelError, OutOfMemory, IOFailure, InternalError,
                                            Unavailable, TimedOut)}


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
    """Check a pixel-format dict and return it normalised; raise BadRequest if it is not one."""
    if not isinstance(fmt, dict):
        raise BadRequest("format must be an object with dtype, channels and transfer")
    dtype = fmt.get("dtype")
    channels = fmt.get("channels", "RGBA")
    transfer = fmt.get("transfer", "srgb")
    for key, value in (("dtype", dtype), ("channels", channels), ("transfer", transfer)):
        if not isinstance(value, str):
            raise BadRequest(f"format {key} must be a string, got {value!r}"[:MAX_QUOTE])
    if dtype not in DTYPE_SIZES:
        raise BadRequest(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_SIZES)}")
    if channels not in CHANNEL_ORDERS:
        raise BadRequest(f"unknown channel order {channels!r}; expected one of {list(CHANNEL_ORDERS)}")
    if transfer not in TRANSFERS:
        raise BadRequest(f"unknown transfer {transfer!r}; expected one of {list(TRANSFERS)}")
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


def draft_model(models, style):
    """The model a draft of ``style`` runs, by an ``info`` reply's ``models``: the style's lite net (its
    ``lite``), or ``style`` itself when it is a lite net or is not listed (the daemon then refuses the
    name, listing its models). BadRequest naming the command that makes one when it has no lite net."""
    for model in models:
        if model.get("name") == style:
            if model.get("teacher") or model.get("lite"):
                return model.get("lite") or style
            raise BadRequest(f"the style {style!r} has no lite (draft) version: make one with "
                             f"`brushwork train distill --teacher {style}`"[:2 * MAX_QUOTE])
    return style


# ---- request options ------------------------------------------------------------------------

STRENGTH_RANGE = (0.0, 1.0)   # stylize: 0 = the original, 1 = the full style
MAX_BORDER = 160              # a style net's mirrored border; nets.edge_hiding_border(16 blocks) is 148


def check_strength(value, field="'strength'"):
    """``value`` as a float if it is a stylize strength (a number from 0 to 1); raises BadRequest
    naming ``field`` (the daemon's header field, or a command-line flag)."""
    low, high = STRENGTH_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f"{field} must be a number from {low:g} to {high:g}, got {value!r}"[:MAX_QUOTE])
    return float(value)


def check_switch(name, value):
    """``value`` if it is a switch's value, a JSON boolean (a string such as "no" is not false);
    raises BadRequest naming ``name``."""
    if not isinstance(value, bool):
        raise BadRequest(f"{name!r} must be true or false, got {value!r}"[:MAX_QUOTE])
    return value


@dataclasses.dataclass(frozen=True)
class TrainOption:
    """One training option of ``train_style`` (or ``distill``) requests and of ``brushwork train style``
    (``train distill``).

    ``kind`` is int, float, bool or str; a request's number must lie in ``low``..``high`` (bounds
    that protect the daemon's machine; the trainer's own command line takes any value) and be a
    multiple of ``multiple_of``, a string one of ``choices``. ``default`` is the trainer's (None:
    it decides, e.g. from the VGG flavour); ``editor_default`` what the daemon uses for the
    editors' trainings unless a request says otherwise (None: the trainer's default). ``help`` is
    the trainer's ``--help`` text (``%(default)s`` is the default); ``affects_speed`` marks the
    options that set how long one iteration takes.
    """

    name: str
    kind: type
    low: float
    high: float
    default: object
    help: str
    editor_default: object = None
    multiple_of: int = 1
    affects_speed: bool = False
    metavar: str = None
    choices: tuple = None

    @property
    def flag(self):
        """The trainer's command-line flag: ``--style-size`` for ``style_size``."""
        return "--" + self.name.replace("_", "-")

    def takes_type(self, value):
        """Whether ``value`` is of the option's kind (true/false, a number or a string), whatever its range."""
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def check(self, value):
        """``value`` if a request may set the option to it; raises BadRequest saying what it takes."""
        if self.kind is bool:
            return check_switch(self.name, value)
        if self.kind is str:
            if value not in self.choices:
                raise BadRequest(f"{self.name!r} must be one of {', '.join(map(repr, self.choices))}, got {value!r}"
                                 [:MAX_QUOTE])
            return value
        if not self.takes_type(value) or (self.kind is int and not isinstance(value, int)) \
                or not math.isfinite(value) or not self.low <= value <= self.high:
            raise BadRequest(f"{self.name!r} must be {'an integer' if self.kind is int else 'a number'} "
                             f"from {self.low} to {self.high}, got {value!r}"[:MAX_QUOTE])
        if self.multiple_of > 1 and value % self.multiple_of:
            raise BadRequest(f"{self.name!r} must be a multiple of {self.multiple_of}, got {value}")
        return value


# The options a train_style request may set, in the order the trainer's --help lists them. The
# daemon decides the rest (device, output and run dirs, VGG weights, checkpoints kept). The
# bounds: 100,000 iterations is 2.5 times the paper's training, and a checkpoint (over 100 MB for
# the paper's net) at most every 100 iterations, the newest few kept.
TRAIN_OPTIONS = {option.name: option for option in (
    TrainOption("iterations", int, 1, 100_000, 40_000, "optimizer steps (default %(default)s)",
                editor_default=2000),
    TrainOption("size", int, 16, 1024, 256, "training crop size (default %(default)s)", multiple_of=4,
                affects_speed=True),
    TrainOption("style_size", int, 16, 4096, 256,
                "the style image is resized to this longer side (default %(default)s)"),
    TrainOption("batch", int, 1, 64, 4, "images per step and per process (default %(default)s)",
                affects_speed=True),
    TrainOption("lr", float, 1e-6, 1.0, 1e-3, "Adam learning rate (default %(default)s)"),
    TrainOption("seed", int, 0, 2**31 - 1, 0, "random seed: same seed, same run (default %(default)s)"),
    TrainOption("content_weight", float, 0.0, 1e15, None, "feature loss weight"),
    TrainOption("style_weight", float, 0.0, 1e15, None, "style loss weight"),
    TrainOption("tv_weight", float, 0.0, 1e15, None, "total variation weight"),
    TrainOption("checkpoint_every", int, 100, 100_000, 1000,
                "write a checkpoint, preview and loss curve every N iterations (default %(default)s)", metavar="N"),
    TrainOption("channels", int, 4, 128, None, "net width (default: the paper's)", affects_speed=True),
    TrainOption("blocks", int, 1, 16, None, "residual blocks (default: the paper's)", affects_speed=True),
    # A few hundred photos of one's own are a small training set: crops at varied scales,
    # mirrored half the time, keep a net from learning them by heart (docs/models.md).
    TrainOption("zoom", float, 1.0, 4.0, 1.0, "augment: crop at random scales, from the whole photo (shorter "
                "side = --size) to Z times closer (default 1: off)", editor_default=2.0, metavar="Z"),
    TrainOption("flip", bool, False, True, False, "augment: mirror half the crops left to right",
                editor_default=True),
    # The editors' trainings use the net's reach (nets.edge_hiding_border) unless a request sets it.
    TrainOption("border", int, 0, MAX_BORDER, 0, "run the net on its input mirrored B pixels out on every side "
                "and crop the output back, in training and in use (a multiple of 4; default 0). With at least "
                "the net's reach (17 + 8 x blocks, rounded up: 60 for 5 blocks, 84 for 8) the net cannot find "
                "the image's edge, so it paints no lines along it", multiple_of=4, affects_speed=True, metavar="B"),
    TrainOption("time_limit", float, 1.0, 1e7, None, "stop after this many seconds of training, checkpoint and "
                "export what was learnt (the model's recipe records the iterations done)", metavar="SECONDS"),
)}


def check_train_option(name, value):
    """``value`` if a request may set training option ``name`` to it; raises BadRequest."""
    option = TRAIN_OPTIONS.get(name)
    if option is None:
        raise BadRequest(f"unknown training option {name!r}; the training options are {sorted(TRAIN_OPTIONS)}")
    return option.check(value)


# The options a distill request (and the lite version a train_style request asks for) may set:
# `brushwork train distill`'s, with the editors' defaults. Those make a quick lite net in about 20
# minutes on a laptop CPU (``recipe`` "single"): 256 crops of 128 px for the teacher to stylise once
# (a minute or two), then the student's training, stopped after 15 minutes if its iterations take
# longer. ``recipe`` "two-step" is the bundled lite nets' recipe (1.5 to 2.5 hours on a 2-core CPU):
# it sets the iterations and learning rates itself (RECIPE_SETS), and the editors' defaults do not
# apply to it. docs/protocol.md, "Lite versions"; the recipe itself: docs/models.md, "Lite nets".
DISTILL_OPTIONS = {option.name: option for option in (
    TrainOption("recipe", str, None, None, "two-step", "two-step (default): the bundled lite nets' recipe, in parts "
                "that each start from the last (RUN_DIR/step1, step2a, ...: pixels first, then the VGG terms; about "
                "2 hours on a 2-core CPU), which sets the iterations, learning rates and loss weights; single: one "
                "run with the options given", editor_default="single", choices=("two-step", "single")),
    dataclasses.replace(TRAIN_OPTIONS["iterations"], editor_default=3000),
    dataclasses.replace(TRAIN_OPTIONS["size"], low=32, editor_default=128),
    TrainOption("pool", int, 1, 20_000, 300, "crops the teacher stylises once, cached in the run dir "
                "(default %(default)s)", editor_default=256, metavar="N"),
    *(TRAIN_OPTIONS[name] for name in ("batch", "lr", "seed", "checkpoint_every", "channels", "blocks")),
    dataclasses.replace(TRAIN_OPTIONS["time_limit"], editor_default=900.0),
)}
RECIPE_SETS = ("iterations", "lr")          # distillation options the two-step recipe sets for each of its parts
# the editors' choice of how a lite version is made: (recipe, label)
LITE_RECIPES = (("single", f"Quick: one run of at most {DISTILL_OPTIONS['time_limit'].editor_default / 60:.0f} min"),
                ("two-step", "Full: the bundled lite nets' recipe, about 2 h on a laptop CPU"))
LITE_SUFFIX = "_lite"                       # a lite net's name: its teacher's + this, unless named
MAX_DISTILL_TARGETS_BYTES = 4 * 1024 ** 3   # a request's teacher targets on disk: pool x 2 x 3 x size x size


def lite_request(options, recipe):
    """The distillation options an editor asks for a lite version with: its settings' ``options``
    and ``recipe`` (the full recipe, "two-step", sets RECIPE_SETS itself: they are left out)."""
    return {**{key: value for key, value in options.items()
               if key != "recipe" and not (recipe == "two-step" and key in RECIPE_SETS)}, "recipe": recipe}


def check_distill_option(name, value):
    """``value`` if a distill request may set option ``name`` to it; raises BadRequest."""
    option = DISTILL_OPTIONS.get(name)
    if option is None:
        raise BadRequest(f"unknown distillation option {name!r}; the distillation options are "
                         f"{sorted(DISTILL_OPTIONS)}")
    return option.check(value)
