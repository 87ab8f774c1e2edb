"""One model's files: what makes them valid, and reading them without running code.

A model is three files in one directory:

- ``<name>.safetensors``: the net's state dict (safetensors, so loading runs no code),
- ``<name>.json``: metadata (see :func:`validate_metadata` and docs/architecture.md),
- ``<name>.png``: optional thumbnail, at most 128 px on its long side.

Every read is bounded (:func:`read_regular_file`) and every failure is a
:class:`backend.protocol.ModelError` naming what is wrong: :func:`load_model` is how
:class:`backend.model_store.ModelStore` reads a model, one bad file costing that model only.
"""

import functools
import hashlib
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch

from backend.nets import UPSAMPLE_MODES, build_net
from backend.protocol import MAX_BORDER, SR_SCALES, ModelError

log = logging.getLogger("brushwork.models")

FORMAT_VERSION = 1
MAX_NAME_LENGTH = 64
NAME_PATTERN = re.compile(rf"^[a-z0-9][a-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}$")
MAX_METADATA_BYTES = 1 << 20      # a model's JSON file
MAX_THUMBNAIL_BYTES = 1 << 20     # larger thumbnails are ignored (they travel in `info` replies)
MAX_METADATA_DEPTH = 32           # nested lists/objects in a model's JSON (recipe and data included)
WEIGHTS_HEADER_SLACK = 64 * 1024  # a safetensors file may exceed its tensors' bytes by its header, at most this
MAX_TEXT = {"display_name": 200, "loss": 64, "vgg": 64, "created": 64, "sha256": 64, "weights": 255}  # longest strings
# architecture key -> (lowest, highest); wider or deeper nets than these are refused before any allocation
ARCHITECTURE_RANGES = {"channels": (1, 256), "blocks": (1, 32), "scale": (2, 8)}

# key -> allowed types; every key is required (null allowed where NoneType is listed).
_METADATA_TYPES = {
    "format": (int,),
    "name": (str,),
    "display_name": (str,),
    "kind": (str,),
    "scale": (int,),
    "architecture": (dict,),
    "weights": (str,),
    "sha256": (str,),
    "vgg": (str, type(None)),
    "loss": (str,),
    "recipe": (dict,),
    "data": (dict,),
    "created": (str,),
}


def read_regular_file(path, limit):
    """The bytes of ``path``, which must be a regular file (links to one are followed) of at most
    ``limit`` bytes; else ModelError.

    The file is opened without blocking, checked on the open descriptor and read no further than
    ``limit``, so a FIFO, a device such as /dev/zero or a file that grows cannot stall or flood the caller.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ModelError(f"cannot open {Path(path).name}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"{Path(path).name} is not a regular file")
        if info.st_size > limit:
            raise ModelError(f"{Path(path).name} is larger than {limit} bytes ({info.st_size})")
        chunks, left = [], info.st_size + 1   # one byte more tells a file that grew meanwhile
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read {Path(path).name}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > min(info.st_size, limit):
        raise ModelError(f"{Path(path).name} grew while it was read")
    return data


def read_metadata(json_path):
    """Read and parse a model's JSON file (a bounded regular-file read); ModelError
    for anything that is not a JSON object of plain nesting depth."""
    data = read_regular_file(json_path, MAX_METADATA_BYTES)
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError includes integers of over 4300 digits
        raise ModelError(f"cannot read metadata: {exc}") from None
    except RecursionError:
        raise ModelError("cannot read metadata: JSON nested too deeply") from None
    if not isinstance(meta, dict):
        raise ModelError("metadata must be a JSON object")
    _check_depth(meta)
    return meta


def _check_depth(value):
    """Raise ModelError if ``value`` nests lists/dicts deeper than MAX_METADATA_DEPTH
    (deeper values would exhaust the stack of whatever copies or encodes them later)."""
    level = [value]
    for depth in range(MAX_METADATA_DEPTH + 1):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return
    raise ModelError(f"metadata nests lists or objects more than {MAX_METADATA_DEPTH} deep")


def validate_metadata(meta):
    """Check a model's metadata dict; return it or raise ModelError.

    Checks required keys and their types, string lengths (no control characters), the name
    pattern, kind/scale/architecture consistency and ranges, nesting depth, the optional ``mirror_edges`` (a
    style model's, true or false: see :func:`backend.engine.edge_margin`), the optional ``teacher`` (a
    lite net's: the name of the style model it was distilled from), and that ``weights`` is a plain
    file name (no directories).
    """
    if not isinstance(meta, dict):
        raise ModelError("metadata must be a JSON object")
    _check_depth(meta)
    missing = [key for key in _METADATA_TYPES if key not in meta]
    if missing:
        raise ModelError(f"metadata lacks required keys: {', '.join(missing)}")
    for key, types in _METADATA_TYPES.items():
        value = meta[key]
        # bool is an int subclass; a JSON true is never a valid number here.
        if isinstance(value, bool) or not isinstance(value, types):
            raise ModelError(f"metadata key {key!r} has the wrong type ({type(value).__name__})")
    for key, limit in MAX_TEXT.items():
        value = meta[key]
        if value is not None and (len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise ModelError(f"metadata key {key!r} must be at most {limit} characters without control "
                             "characters")
    if meta["format"] != FORMAT_VERSION:
        raise ModelError(f"unsupported metadata format {meta['format']} (expected {FORMAT_VERSION})")
    if not NAME_PATTERN.match(meta["name"]):
        raise ModelError(f"invalid model name {meta['name']!r}: use lower-case letters, digits, '_', '.', '-' "
                         "(at most 64, starting with a letter or digit)")
    kind, scale, arch = meta["kind"], meta["scale"], meta["architecture"]
    if kind not in ("style", "sr"):
        raise ModelError(f"unknown model kind {kind!r} (expected 'style' or 'sr')")
    if arch.get("type") != kind:
        raise ModelError(f"architecture type {arch.get('type')!r} does not match kind {kind!r}")
    if kind == "style" and scale != 1:
        raise ModelError(f"a style model must have scale 1, not {scale}")
    if kind == "sr" and (scale not in SR_SCALES or arch.get("scale") != scale):
        raise ModelError(f"SR scale {scale} must be one of {SR_SCALES} and equal architecture scale "
                         f"{arch.get('scale')!r}")
    allowed = {"type", "channels", "blocks"} | ({"scale", "residual", "upsample"} if kind == "sr" else {"border", "widths"})
    if set(arch) - allowed:
        raise ModelError(f"unknown architecture keys {sorted(set(arch) - allowed)} (a {kind} model has "
                         f"{sorted(allowed)})")
    if not isinstance(arch.get("residual", False), bool):
        raise ModelError(f"architecture residual must be true or false, not {arch['residual']!r}")
    if arch.get("upsample", "nearest") not in UPSAMPLE_MODES:
        raise ModelError(f"architecture upsample must be one of {list(UPSAMPLE_MODES)}, not {arch['upsample']!r}")
    border = arch.get("border", 0)
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= border <= MAX_BORDER or border % 4:
        raise ModelError(f"architecture border must be a multiple of 4 from 0 to {MAX_BORDER}, not {border!r}")
    if not isinstance(meta.get("mirror_edges", True), bool) or (kind == "sr" and "mirror_edges" in meta):
        raise ModelError(f"mirror_edges is for style models and must be true or false, not "
                         f"{meta['mirror_edges']!r}")
    teacher = meta.get("teacher")
    if teacher is not None and (kind != "style" or not isinstance(teacher, str) or not NAME_PATTERN.match(teacher)
                                or teacher == meta["name"]):
        raise ModelError(f"teacher is for style models and must be another model's name, not {teacher!r}"[:300])
    for key in ("channels", "blocks"):
        low, high = ARCHITECTURE_RANGES[key]
        value = arch.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            raise ModelError(f"architecture {key} must be an integer from {low} to {high}, not {value!r}")
    widths = arch.get("widths")
    low, high = ARCHITECTURE_RANGES["channels"]
    if widths is not None and not (isinstance(widths, list) and len(widths) == 5 and all(
            isinstance(w, int) and not isinstance(w, bool) and low <= w <= high for w in widths)
            and widths[0] == arch.get("channels", widths[0])):
        raise ModelError(f"architecture widths must be 5 integers from {low} to {high}, the first equal to "
                         f"channels, not {widths!r}"[:300])
    weights = meta["weights"]
    if weights in ("", ".", "..") or "/" in weights or "\\" in weights or weights != os.path.basename(weights):
        raise ModelError(f"weights must be a plain file name in the model's directory, not {weights!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]):
        raise ModelError("sha256 must be 64 lower-case hex digits")
    return meta


@dataclass
class ModelInfo:
    """One valid model found on disk."""

    name: str
    display_name: str
    kind: str
    scale: int
    metadata: dict
    json_path: Path
    weights_path: Path
    thumbnail_path: Path | None = None
    weights_stat: tuple = field(default=(), repr=False)  # (mtime_ns, size) when validated

    @property
    def teacher(self):
        """The style model a lite net was distilled from (its metadata's ``teacher``), else None."""
        return self.metadata.get("teacher")

    def summary(self, lite=None):
        """A JSON-friendly description (what the daemon's ``info`` reply lists): with ``teacher`` for a
        lite net, and ``lite`` (the name of this style's installed lite net) when given."""
        return {"name": self.name, "display_name": self.display_name, "kind": self.kind, "scale": self.scale,
                "architecture": self.metadata["architecture"], "loss": self.metadata["loss"],
                "vgg": self.metadata["vgg"], "created": self.metadata["created"],
                "recipe": self.metadata["recipe"], "data": self.metadata["data"],
                "path": str(self.json_path), **training_record(self.metadata["recipe"]),
                **({"teacher": self.teacher} if self.teacher is not None else {}),
                **({"lite": lite} if lite is not None else {})}


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def training_record(recipe):
    """How much a model trained, from its recipe: ``iterations`` (its own run's plus those of the
    models it was fine-tuned from; None when the recipe does not say), ``partly_trained`` (its run
    stopped before the iterations it was asked for: by ``--time-limit`` or stopped early) and then
    ``planned_iterations``."""
    own = _count(recipe.get("iterations"))
    total, parent = own, recipe.get("init")
    for _ in range(64):   # a fine-tuning chain, bounded against a hand-made file
        if total is None or not isinstance(parent, dict) or not isinstance(parent.get("recipe"), dict):
            break
        earlier = _count(parent["recipe"].get("iterations"))
        total = total + earlier if earlier is not None else None
        parent = parent["recipe"].get("init")
    planned = _count(recipe.get("planned_iterations"))
    partly = bool(recipe.get("stopped_early") or recipe.get("stopped_by_time_limit")
                  or (planned is not None and own is not None and own < planned))
    return {"iterations": total, "partly_trained": partly,
            **({"planned_iterations": planned} if partly and planned is not None else {})}


def file_stat(path):
    """(mtime_ns, size) of ``path``."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _empty_net(meta):
    """The metadata's architecture built on the meta device: shapes and dtypes, no memory."""
    try:
        with torch.device("meta"):
            return build_net(meta["architecture"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"bad architecture {meta['architecture']}: {exc}") from None


def weights_limit(net):
    """The largest weights file ``net``'s architecture can need: its float32 tensors plus a header."""
    return sum(t.numel() * 4 for t in net.state_dict().values()) + WEIGHTS_HEADER_SLACK


@functools.lru_cache(maxsize=256)
def _weights_limit_of(architecture_json):
    """:func:`weights_limit` of an architecture (given as sorted JSON), remembered: building even an
    empty net of the largest allowed architecture takes a tenth of a second."""
    return weights_limit(_empty_net({"architecture": json.loads(architecture_json)}))


def _read_weights(path, meta, limit):
    """Read (at most ``limit`` bytes), hash-check and decode a weights file; return its state dict (CPU tensors)."""
    try:
        data = read_regular_file(path, limit)
    except ModelError as exc:
        raise ModelError(f"weights: {exc.message} (its architecture needs at most {limit})") from None
    try:
        state = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise ModelError(f"weights {path.name} are not a valid safetensors file ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ModelError(f"weights {path.name} do not match the sha256 in the metadata "
                         f"(file {digest[:12]}..., metadata {meta['sha256'][:12]}...)")
    return state


def _net_from_state(meta, net, state, weights_name):
    """Load ``state`` into ``net`` (built on the meta device, so nothing was allocated before the
    weights are known to fit), strictly: every tensor's name, shape and dtype must match; the net
    then takes over the file's tensors."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(f"weights {weights_name} do not fit architecture {meta['architecture']}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(f"weights {weights_name}: tensor {key} has shape {tuple(state[key].shape)}, "
                             f"architecture needs {tuple(tensor.shape)}")
        stored = state[key].dtype
        if stored == torch.float16 and tensor.dtype == torch.float32:
            state[key] = state[key].float()  # half-precision files (the bundled models) run in float32
        elif stored != tensor.dtype:
            raise ModelError(f"weights {weights_name}: tensor {key} is {stored}, architecture needs "
                             f"{tensor.dtype}")
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def _load(json_path):
    """Parse, validate and load one model; return (ModelInfo, net). Raises ModelError."""
    meta = validate_metadata(read_metadata(json_path))
    if meta["name"] != json_path.stem:
        raise ModelError(f"model name {meta['name']!r} does not match the file name {json_path.name}")
    weights_path = json_path.with_name(meta["weights"])
    if not weights_path.is_file():
        raise ModelError(f"weights file {meta['weights']} is missing")
    if not _inside_model_dir(weights_path):
        raise ModelError(f"weights file {meta['weights']} is a link to a file outside the model's folder")
    weights_stat = file_stat(weights_path)
    limit = _weights_limit_of(json.dumps(meta["architecture"], sort_keys=True))
    state = _read_weights(weights_path, meta, limit)
    net = _net_from_state(meta, _empty_net(meta), state, meta["weights"])
    thumbnail = json_path.with_name(f"{meta['name']}.png")
    usable = (thumbnail.is_file() and _inside_model_dir(thumbnail) and thumbnail.stat().st_size <= MAX_THUMBNAIL_BYTES)
    info = ModelInfo(name=meta["name"], display_name=meta["display_name"], kind=meta["kind"], scale=meta["scale"],
                     metadata=meta, json_path=json_path, weights_path=weights_path,
                     thumbnail_path=thumbnail if usable else None, weights_stat=weights_stat)
    return info, net


def load_model(json_path):
    """Parse, validate and load the model whose metadata is ``json_path``; return (ModelInfo, its
    eval-mode CPU float32 net). Every failure is a ModelError: one bad model must never break the
    others (nor the listing, the daemon's start or its replies)."""
    try:
        return _load(json_path)
    except ModelError:
        raise
    except OSError as exc:   # a file removed or replaced while it was being checked
        raise ModelError(f"cannot read {Path(exc.filename or json_path).name}: {exc.strerror or exc}") from None
    except MemoryError:
        raise ModelError("not enough memory to load this model") from None
    except Exception as exc:   # noqa: BLE001 -- any bug or library error costs this one model only
        log.warning("unexpected error loading model %s", json_path, exc_info=True)
        raise ModelError(f"cannot load this model ({type(exc).__name__}: {str(exc)[:200]})") from None


def _inside_model_dir(path):
    """True if ``path``, links resolved, is a file in the folder its name is in (no link elsewhere)."""
    return path.resolve().parent == path.parent.resolve()


