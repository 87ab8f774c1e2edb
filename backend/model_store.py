"""Model files on disk: find, validate, load and save style / super-resolution nets.

A model is three files in one directory:

- ``<name>.safetensors``: the net's state dict (safetensors, so loading runs no code),
- ``<name>.json``: metadata (see :func:`validate_metadata` and docs/architecture.md),
- ``<name>.png``: optional thumbnail, at most 128 px on its long side.

:class:`ModelStore` searches the bundled ``backend/models/`` dir, then the user's dir,
then any extra dirs; a later dir overrides an earlier one by model name. It re-scans by
itself when files appear, change or disappear, so new models show up without a restart.
Broken models are skipped and described in ``store.problems``.
"""

import copy
import functools
import hashlib
import io
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import safetensors.torch
import torch

from backend.nets import UPSAMPLE_MODES, SRNet, StyleNet, build_net
from backend.protocol import MAX_BORDER, BrushworkError

log = logging.getLogger("brushwork.models")

FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
BUNDLED_MODELS_DIR = Path(__file__).resolve().parent / "models"
THUMBNAIL_SIZE = 128
MAX_METADATA_BYTES = 1 << 20      # a model's JSON file
MAX_THUMBNAIL_BYTES = 1 << 20     # larger thumbnails are ignored (they travel in `info` replies)
MAX_METADATA_DEPTH = 32           # nested lists/objects in a model's JSON (recipe and data included)
WEIGHTS_HEADER_SLACK = 64 * 1024  # a safetensors file may exceed its tensors' bytes by its header, at most this
MAX_PROBLEM_CHARS = 500           # one entry of ``store.problems``
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
_SR_SCALES = (2, 4, 8)


def user_models_dir():
    """The per-user model directory of this platform (it need not exist yet)."""
    home = Path.home()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
        return base / "brushwork" / "models"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "brushwork" / "models"
    base = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(base) / "brushwork" / "models"


def read_regular_file(path, limit):
    """The bytes of ``path``, which must be a regular file (links to one are followed) of at most
    ``limit`` bytes; else BrushworkError('model_error').

    The file is opened without blocking, checked on the open descriptor and read no further than
    ``limit``, so a FIFO, a device such as /dev/zero or a file that grows cannot stall or flood the caller.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise BrushworkError(f"cannot open {Path(path).name}: {exc.strerror or exc}", "model_error") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BrushworkError(f"{Path(path).name} is not a regular file", "model_error")
        if info.st_size > limit:
            raise BrushworkError(f"{Path(path).name} is larger than {limit} bytes ({info.st_size})", "model_error")
        chunks, left = [], info.st_size + 1   # one byte more tells a file that grew meanwhile
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise BrushworkError(f"cannot read {Path(path).name}: {exc.strerror or exc}", "model_error") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > min(info.st_size, limit):
        raise BrushworkError(f"{Path(path).name} grew while it was read", "model_error")
    return data


def read_metadata(json_path):
    """Read and parse a model's JSON file (a bounded regular-file read); BrushworkError('model_error')
    for anything that is not a JSON object of plain nesting depth."""
    data = read_regular_file(json_path, MAX_METADATA_BYTES)
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError includes integers of over 4300 digits
        raise BrushworkError(f"cannot read metadata: {exc}", "model_error") from None
    except RecursionError:
        raise BrushworkError("cannot read metadata: JSON nested too deeply", "model_error") from None
    if not isinstance(meta, dict):
        raise BrushworkError("metadata must be a JSON object", "model_error")
    _check_depth(meta)
    return meta


def _check_depth(value):
    """Raise BrushworkError('model_error') if ``value`` nests lists/dicts deeper than MAX_METADATA_DEPTH
    (deeper values would exhaust the stack of whatever copies or encodes them later)."""
    level = [value]
    for depth in range(MAX_METADATA_DEPTH + 1):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return
    raise BrushworkError(f"metadata nests lists or objects more than {MAX_METADATA_DEPTH} deep", "model_error")


def validate_metadata(meta):
    """Check a model's metadata dict; return it or raise BrushworkError('model_error').

    Checks required keys and their types, string lengths (no control characters), the name
    pattern, kind/scale/architecture consistency and ranges, nesting depth, the optional ``mirror_edges`` (a
    style model's, true or false: see :func:`backend.engine.edge_margin`), and that ``weights``
    is a plain file name (no directories).
    """
    if not isinstance(meta, dict):
        raise BrushworkError("metadata must be a JSON object", "model_error")
    _check_depth(meta)
    missing = [key for key in _METADATA_TYPES if key not in meta]
    if missing:
        raise BrushworkError(f"metadata lacks required keys: {', '.join(missing)}", "model_error")
    for key, types in _METADATA_TYPES.items():
        value = meta[key]
        # bool is an int subclass; a JSON true is never a valid number here.
        if isinstance(value, bool) or not isinstance(value, types):
            raise BrushworkError(f"metadata key {key!r} has the wrong type ({type(value).__name__})", "model_error")
    for key, limit in MAX_TEXT.items():
        value = meta[key]
        if value is not None and (len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise BrushworkError(f"metadata key {key!r} must be at most {limit} characters without control "
                                 "characters", "model_error")
    if meta["format"] != FORMAT_VERSION:
        raise BrushworkError(f"unsupported metadata format {meta['format']} (expected {FORMAT_VERSION})",
                             "model_error")
    if not NAME_PATTERN.match(meta["name"]):
        raise BrushworkError(f"invalid model name {meta['name']!r}: use lower-case letters, digits, '_', '.', '-' "
                             "(at most 64, starting with a letter or digit)", "model_error")
    kind, scale, arch = meta["kind"], meta["scale"], meta["architecture"]
    if kind not in ("style", "sr"):
        raise BrushworkError(f"unknown model kind {kind!r} (expected 'style' or 'sr')", "model_error")
    if arch.get("type") != kind:
        raise BrushworkError(f"architecture type {arch.get('type')!r} does not match kind {kind!r}", "model_error")
    if kind == "style" and scale != 1:
        raise BrushworkError(f"a style model must have scale 1, not {scale}", "model_error")
    if kind == "sr" and (scale not in _SR_SCALES or arch.get("scale") != scale):
        raise BrushworkError(f"SR scale {scale} must be one of {_SR_SCALES} and equal architecture scale "
                             f"{arch.get('scale')!r}", "model_error")
    allowed = {"type", "channels", "blocks"} | ({"scale", "residual", "upsample"} if kind == "sr" else {"border"})
    if set(arch) - allowed:
        raise BrushworkError(f"unknown architecture keys {sorted(set(arch) - allowed)} (a {kind} model has "
                             f"{sorted(allowed)})", "model_error")
    if not isinstance(arch.get("residual", False), bool):
        raise BrushworkError(f"architecture residual must be true or false, not {arch['residual']!r}", "model_error")
    if arch.get("upsample", "nearest") not in UPSAMPLE_MODES:
        raise BrushworkError(f"architecture upsample must be one of {list(UPSAMPLE_MODES)}, not {arch['upsample']!r}",
                             "model_error")
    border = arch.get("border", 0)
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= border <= MAX_BORDER or border % 4:
        raise BrushworkError(f"architecture border must be a multiple of 4 from 0 to {MAX_BORDER}, not {border!r}",
                             "model_error")
    if not isinstance(meta.get("mirror_edges", True), bool) or (kind == "sr" and "mirror_edges" in meta):
        raise BrushworkError(f"mirror_edges is for style models and must be true or false, not "
                             f"{meta['mirror_edges']!r}", "model_error")
    for key in ("channels", "blocks"):
        low, high = ARCHITECTURE_RANGES[key]
        value = arch.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            raise BrushworkError(f"architecture {key} must be an integer from {low} to {high}, not {value!r}",
                                 "model_error")
    weights = meta["weights"]
    if weights in ("", ".", "..") or "/" in weights or "\\" in weights or weights != os.path.basename(weights):
        raise BrushworkError(f"weights must be a plain file name in the model's directory, not {weights!r}",
                             "model_error")
    if not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]):
        raise BrushworkError("sha256 must be 64 lower-case hex digits", "model_error")
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

    def summary(self):
        """A JSON-friendly description (what the daemon's ``info`` reply lists)."""
        return {"name": self.name, "display_name": self.display_name, "kind": self.kind, "scale": self.scale,
                "architecture": self.metadata["architecture"], "loss": self.metadata["loss"],
                "vgg": self.metadata["vgg"], "created": self.metadata["created"],
                "recipe": self.metadata["recipe"], "data": self.metadata["data"],
                "path": str(self.json_path), **training_record(self.metadata["recipe"])}


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


def _file_stat(path):
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _empty_net(meta):
    """The metadata's architecture built on the meta device: shapes and dtypes, no memory."""
    try:
        with torch.device("meta"):
            return build_net(meta["architecture"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BrushworkError(f"bad architecture {meta['architecture']}: {exc}", "model_error") from None


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
    except BrushworkError as exc:
        raise BrushworkError(f"weights: {exc.message} (its architecture needs at most {limit})",
                             "model_error") from None
    try:
        state = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise BrushworkError(f"weights {path.name} are not a valid safetensors file ({exc})", "model_error") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise BrushworkError(f"weights {path.name} do not match the sha256 in the metadata "
                             f"(file {digest[:12]}..., metadata {meta['sha256'][:12]}...)", "model_error")
    return state


def _net_from_state(meta, net, state, weights_name):
    """Load ``state`` into ``net`` (built on the meta device, so nothing was allocated before the
    weights are known to fit), strictly: every tensor's name, shape and dtype must match; the net
    then takes over the file's tensors."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise BrushworkError(f"weights {weights_name} do not fit architecture {meta['architecture']}: "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]}", "model_error")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise BrushworkError(f"weights {weights_name}: tensor {key} has shape {tuple(state[key].shape)}, "
                                 f"architecture needs {tuple(tensor.shape)}", "model_error")
        stored = state[key].dtype
        if stored == torch.float16 and tensor.dtype == torch.float32:
            state[key] = state[key].float()  # half-precision files (the bundled models) run in float32
        elif stored != tensor.dtype:
            raise BrushworkError(f"weights {weights_name}: tensor {key} is {stored}, architecture needs "
                                 f"{tensor.dtype}", "model_error")
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def _load_model_files(json_path):
    """Parse, validate and load one model; return (ModelInfo, net). Raises BrushworkError."""
    meta = validate_metadata(read_metadata(json_path))
    if meta["name"] != json_path.stem:
        raise BrushworkError(f"model name {meta['name']!r} does not match the file name {json_path.name}",
                             "model_error")
    weights_path = json_path.with_name(meta["weights"])
    if not weights_path.is_file():
        raise BrushworkError(f"weights file {meta['weights']} is missing", "model_error")
    if not _inside_model_dir(weights_path):
        raise BrushworkError(f"weights file {meta['weights']} is a link to a file outside the model's folder",
                             "model_error")
    weights_stat = _file_stat(weights_path)
    limit = _weights_limit_of(json.dumps(meta["architecture"], sort_keys=True))
    state = _read_weights(weights_path, meta, limit)
    net = _net_from_state(meta, _empty_net(meta), state, meta["weights"])
    thumbnail = json_path.with_name(f"{meta['name']}.png")
    usable = (thumbnail.is_file() and _inside_model_dir(thumbnail) and thumbnail.stat().st_size <= MAX_THUMBNAIL_BYTES)
    info = ModelInfo(name=meta["name"], display_name=meta["display_name"], kind=meta["kind"], scale=meta["scale"],
                     metadata=meta, json_path=json_path, weights_path=weights_path,
                     thumbnail_path=thumbnail if usable else None, weights_stat=weights_stat)
    return info, net


def _load_isolated(json_path):
    """:func:`_load_model_files`, with every failure turned into BrushworkError('model_error'): one bad
    model must never break the others (nor the listing, the daemon's start or its replies)."""
    try:
        return _load_model_files(json_path)
    except BrushworkError:
        raise
    except OSError as exc:   # a file removed or replaced while it was being checked
        raise BrushworkError(f"cannot read {Path(exc.filename or json_path).name}: {exc.strerror or exc}",
                             "model_error") from None
    except MemoryError:
        raise BrushworkError("not enough memory to load this model", "model_error") from None
    except Exception as exc:   # noqa: BLE001 -- any bug or library error costs this one model only
        log.warning("unexpected error loading model %s", json_path, exc_info=True)
        raise BrushworkError(f"cannot load this model ({type(exc).__name__}: {str(exc)[:200]})",
                             "model_error") from None


def _inside_model_dir(path):
    """True if ``path``, links resolved, is a file in the folder its name is in (no link elsewhere)."""
    return path.resolve().parent == path.parent.resolve()


def _sort_key(info):
    return (info.kind != "style", info.scale, info.name)


class ModelStore:
    """All models in the search path, re-scanned whenever the files change.

    ``ModelStore(extra_dirs)``: bundled models, then the user's dir, then ``extra_dirs``
    (a path or a list of paths); later dirs override earlier ones by name.
    Thread-safe: ``list()`` may run in one thread while another loads a net.
    """

    def __init__(self, extra_dirs=(), include_bundled=True, include_user=True):
        if isinstance(extra_dirs, (str, os.PathLike)):
            extra_dirs = [extra_dirs]
        dirs = ([BUNDLED_MODELS_DIR] if include_bundled else []) + ([user_models_dir()] if include_user else [])
        self.dirs = dirs + [Path(d).expanduser() for d in extra_dirs]
        self.problems = []          # "path: message" for each model that was skipped
        self._lock = threading.RLock()
        self._signature = None
        self._models = {}           # name -> ModelInfo
        self._checked = {}          # json path -> (its stat, weights path, weights stat, (info, error))
        self._nets = {}             # (weights path, mtime_ns, size) -> net

    def _dir_signature(self):
        """Cheap fingerprint of the search path: dir mtimes and (name, mtime, size) of model files."""
        parts = []
        for directory in self.dirs:
            try:
                entries = sorted((e for e in os.scandir(directory)
                                  if e.name.endswith((".json", ".safetensors", ".png"))), key=lambda e: e.name)
                parts.append((str(directory), os.stat(directory).st_mtime_ns, tuple(map(_entry_stat, entries))))
            except OSError:
                parts.append((str(directory), None, ()))
        return tuple(parts)

    def refresh(self):
        """Re-scan the search path if anything in it changed (stat calls only when nothing did)."""
        with self._lock:
            signature = self._dir_signature()
            if signature == self._signature:
                return
            models, problems, checked = {}, [], {}
            for directory in self.dirs:
                if not directory.is_dir():
                    continue
                for json_path in sorted(directory.glob("*.json")):
                    try:
                        info, error = self._check(json_path, checked)
                    except Exception as exc:   # noqa: BLE001 -- a bug must cost this one model only
                        log.warning("unexpected error checking model %s", json_path, exc_info=True)
                        info, error = None, f"cannot check this model ({type(exc).__name__}: {str(exc)[:200]})"
                    if error is not None:
                        problems.append(f"{json_path}: {error}"[:MAX_PROBLEM_CHARS])
                    else:
                        models[info.name] = info
            live = {info.weights_path for info in models.values()}
            self._nets = {k: v for k, v in self._nets.items() if k[0] in live}
            self._models, self.problems, self._checked = models, problems, checked
            self._signature = signature

    def _check(self, json_path, checked):
        """Validate one model, reusing the last result while its JSON file and the weights file it
        names are unchanged (an unchanged folder costs stat calls, not reads)."""
        try:
            json_stat = _file_stat(json_path)
        except OSError as exc:
            return None, str(exc)
        cached = self._checked.get(json_path)
        if cached is not None and cached[0] == json_stat and cached[2] == _stat_or_none(cached[1]):
            checked[json_path] = cached
            return cached[3]
        weights_path = _named_weights_path(json_path)
        weights_stat = _stat_or_none(weights_path)
        try:
            info, net = _load_isolated(json_path)
            self._nets[(info.weights_path, *info.weights_stat)] = net
            result = (info, None)
        except BrushworkError as exc:
            result = (None, exc.message)
        checked[json_path] = (json_stat, weights_path, weights_stat, result)
        return result

    def list(self, refresh=True):
        """Valid models, style first, then SR by scale, each by name. Never raises for bad files.

        ``refresh=False`` answers from the last scan without waiting for one that is under way
        (the daemon's loop does so; a watcher thread re-scans)."""
        if refresh:
            self.refresh()
        return sorted(self._models.values(), key=_sort_key)   # the table is replaced, never changed

    def get(self, name, refresh=True):
        """The ModelInfo called ``name``; BrushworkError('unknown_model') if there is none."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise BrushworkError(f"{str(name)[:80]!r} is not a model name (lower-case letters, digits, '_', '.', "
                                 "'-')", "unknown_model")
        if refresh:
            self.refresh()
        models = self._models
        info = models.get(name)
        if info is None:
            known = ", ".join(sorted(models)) or "none"
            raise BrushworkError(f"no model named {name!r} (available: {known})"[:2000], "unknown_model")
        return info

    def find_sr(self, scale, refresh=True):
        """The default SR model for ``scale``: the first pixel-loss one by name, else the first by name
        (a feature-loss net invents texture on flat areas; docs/models.md). BrushworkError('unknown_model')
        if there is none."""
        candidates = [info for info in self.list(refresh) if info.kind == "sr" and info.scale == scale]
        if not candidates:
            raise BrushworkError(f"no super-resolution model for scale x{scale}", "unknown_model")
        return min(candidates, key=lambda info: (info.metadata.get("loss") != "pixel", info.name))

    def resolve_sr(self, model=None, scale=None, refresh=True):
        """The SR model an upscale runs: ``model`` by name, else the default for ``scale`` (None: 4).
        BrushworkError('bad_request') if ``model`` is no SR model or upscales by another ``scale``."""
        info = self.find_sr(scale or 4, refresh) if model is None else self.get(model, refresh)
        if info.kind != "sr":
            raise BrushworkError(f"model {info.name!r} is a {info.kind} model, not a super-resolution model",
                                 "bad_request")
        if scale is not None and scale != info.scale:
            others = [m.name for m in self.list(refresh=False) if m.kind == "sr" and m.scale == scale]
            raise BrushworkError(f"model {info.name!r} upscales x{info.scale}, not x{scale} (x{scale} models: "
                                 f"{', '.join(others) or 'none'}; or leave 'scale' out)", "bad_request")
        return info

    def load(self, model):
        """The eval-mode CPU float32 net of ``model`` (a name or ModelInfo), cached while its file is unchanged.

        Callers must not modify the returned net (copy it first if they need to)."""
        info = self.get(model) if isinstance(model, str) else model
        with self._lock:
            try:
                key = (info.weights_path, *_file_stat(info.weights_path))
            except OSError as exc:
                raise BrushworkError(f"{info.weights_path}: cannot read weights ({exc})", "model_error") from None
            net = self._nets.get(key)
            if net is None:
                try:
                    _, net = _load_isolated(info.json_path)
                except BrushworkError as exc:
                    raise BrushworkError(f"{info.json_path}: {exc.message}", "model_error") from None
                self._nets = {k: v for k, v in self._nets.items() if k[0] != info.weights_path}
                self._nets[key] = net
            return net


def _entry_stat(entry):
    """(name, mtime, size) of a directory entry; a dangling link is (name, None, None), not an error."""
    try:
        st = entry.stat()
        return entry.name, st.st_mtime_ns, st.st_size
    except OSError:
        return entry.name, None, None


def _named_weights_path(json_path):
    """The weights file the JSON names, or None if it names none (a cache key only)."""
    try:
        return json_path.with_name(os.path.basename(str(read_metadata(json_path)["weights"])))
    except (BrushworkError, KeyError, TypeError, ValueError):
        return None


def _stat_or_none(path):
    try:
        return None if path is None else _file_stat(path)
    except (OSError, ValueError):   # ValueError: a name with a NUL byte
        return None


def architecture_of(net):
    """The ``architecture`` metadata dict describing ``net`` (a StyleNet or SRNet)."""
    if isinstance(net, StyleNet):
        return {"type": "style", "channels": net.encoder[0][1].out_channels, "blocks": len(net.residuals),
                **({"border": net.border} if net.border else {})}
    if isinstance(net, SRNet):
        return {"type": "sr", "scale": net.scale, "channels": net.head[0][1].out_channels,
                "blocks": len(net.residuals), **({"residual": True} if net.residual else {}),
                **({"upsample": net.upsample_mode} if net.upsample_mode != "nearest" else {})}
    raise TypeError(f"not a brushwork net: {type(net).__name__}")


def write_atomic(path, data):
    """Write bytes to ``path`` via a synced temp file in the same dir and os.replace. An OSError
    (a full disk, say) names ``path`` and leaves no temp file."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def save_model(directory, name, net, metadata, thumbnail=None, half=False):
    """Save ``net`` as model ``name`` in ``directory``; return the JSON path.

    ``metadata`` supplies at least what the files cannot tell (display_name, loss, vgg,
    recipe, data); ``format``, ``name``, ``kind``, ``scale``, ``architecture``,
    ``weights``, ``sha256`` and ``created`` are filled in. ``thumbnail`` is an optional
    PIL image, shrunk to 128 px. ``half``: store float tensors in float16 (half the size;
    they load as float32). Files are written atomically: weights, thumbnail, JSON last.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch = architecture_of(net)
    meta = copy.deepcopy(dict(metadata))
    meta.update(format=FORMAT_VERSION, name=name, kind=arch["type"], architecture=arch,
                scale=arch.get("scale", 1), weights=f"{name}.safetensors")
    meta.setdefault("display_name", name.replace("_", " ").title())
    meta.setdefault("vgg", None)
    meta.setdefault("loss", "style" if arch["type"] == "style" else "feat")
    meta.setdefault("recipe", {})
    meta.setdefault("data", {})
    meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    float_type = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", float_type if v.is_floating_point() else v.dtype).contiguous()
             for k, v in net.state_dict().items()}
    data = safetensors.torch.save(state)
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    validate_metadata(meta)
    write_atomic(directory / meta["weights"], data)
    if thumbnail is not None:
        thumb = thumbnail.convert("RGB")
        thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        buf = io.BytesIO()
        thumb.save(buf, format="PNG")
        write_atomic(directory / f"{name}.png", buf.getvalue())
    json_path = directory / f"{name}.json"
    write_atomic(json_path, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
    return json_path
