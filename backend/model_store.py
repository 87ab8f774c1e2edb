"""The models a daemon or CLI serves: the search path, re-scanned when its files change.

:class:`ModelStore` searches the bundled ``backend/models/`` dir, then the user's dir,
then any extra dirs; a later dir overrides an earlier one by model name. It re-scans by
itself when files appear, change or disappear, so new models show up without a restart.
Broken models are skipped and described in ``store.problems``. What makes a model's files
valid, and how they are read, is :mod:`backend.model_files`; writing them is
:mod:`backend.model_save`.
"""

import logging
import os
import sys
import threading
from pathlib import Path

from backend.model_files import NAME_PATTERN, file_stat, load_model, read_metadata
from backend.protocol import LITE_SUFFIX, BadRequest, ModelError, UnknownModel

log = logging.getLogger("brushwork.models")

BUNDLED_MODELS_DIR = Path(__file__).resolve().parent / "models"
MAX_PROBLEM_CHARS = 500           # one entry of ``store.problems``


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


def _sort_key(info):
    return (info.kind != "style", info.scale, info.name)


def lite_versions(models):
    """``{style name: the name of its lite net}`` for each style model among ``models`` (ModelInfos)
    that has a lite net among them (one whose ``teacher`` it is): ``NAME_lite`` if that is one,
    else the first by name."""
    styles = {info.name for info in models if info.kind == "style"}
    lites = {}
    for info in sorted(models, key=lambda m: (m.name != f"{m.teacher}{LITE_SUFFIX}", m.name)):
        if info.teacher in styles:
            lites.setdefault(info.teacher, info.name)
    return lites


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
            json_stat = file_stat(json_path)
        except OSError as exc:
            return None, str(exc)
        cached = self._checked.get(json_path)
        if cached is not None and cached[0] == json_stat and cached[2] == _stat_or_none(cached[1]):
            checked[json_path] = cached
            return cached[3]
        weights_path = _named_weights_path(json_path)
        weights_stat = _stat_or_none(weights_path)
        try:
            info, net = load_model(json_path)
            self._nets[(info.weights_path, *info.weights_stat)] = net
            result = (info, None)
        except ModelError as exc:
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

    def summaries(self, refresh=True):
        """``(ModelInfo, its summary)`` for each of :meth:`list`'s models: the summary as ``info``
        describes it, a style's with ``lite`` when it has a lite net (:func:`lite_versions`)."""
        models = self.list(refresh)
        lites = lite_versions(models)
        return [(info, info.summary(lite=lites.get(info.name))) for info in models]

    def get(self, name, refresh=True):
        """The ModelInfo called ``name``; UnknownModel if there is none."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise UnknownModel(f"{str(name)[:80]!r} is not a model name (lower-case letters, digits, '_', '.', "
                               "'-')")
        if refresh:
            self.refresh()
        models = self._models
        info = models.get(name)
        if info is None:
            known = ", ".join(sorted(models)) or "none"
            raise UnknownModel(f"no model named {name!r} (available: {known})"[:2000])
        return info

    def find_sr(self, scale, refresh=True):
        """The default SR model for ``scale``: the first pixel-loss one by name, else the first by name
        (a feature-loss net invents texture on flat areas; docs/models.md). UnknownModel
        if there is none."""
        candidates = [info for info in self.list(refresh) if info.kind == "sr" and info.scale == scale]
        if not candidates:
            raise UnknownModel(f"no super-resolution model for scale x{scale}")
        return min(candidates, key=lambda info: (info.metadata.get("loss") != "pixel", info.name))

    def resolve_sr(self, model=None, scale=None, refresh=True):
        """The SR model an upscale runs: ``model`` by name, else the default for ``scale`` (None: 4).
        BadRequest if ``model`` is no SR model or upscales by another ``scale``."""
        info = self.find_sr(scale or 4, refresh) if model is None else self.get(model, refresh)
        if info.kind != "sr":
            raise BadRequest(f"model {info.name!r} is a {info.kind} model, not a super-resolution model")
        if scale is not None and scale != info.scale:
            others = [m.name for m in self.list(refresh=False) if m.kind == "sr" and m.scale == scale]
            raise BadRequest(f"model {info.name!r} upscales x{info.scale}, not x{scale} (x{scale} models: "
                             f"{', '.join(others) or 'none'}; or leave 'scale' out)")
        return info

    def load(self, model):
        """The eval-mode CPU float32 net of ``model`` (a name or ModelInfo), cached while its file is unchanged.

        Callers must not modify the returned net (copy it first if they need to)."""
        info = self.get(model) if isinstance(model, str) else model
        with self._lock:
            try:
                key = (info.weights_path, *file_stat(info.weights_path))
            except OSError as exc:
                raise ModelError(f"{info.weights_path}: cannot read weights ({exc})") from None
            net = self._nets.get(key)
            if net is None:
                try:
                    _, net = load_model(info.json_path)
                except ModelError as exc:
                    raise ModelError(f"{info.json_path}: {exc.message}") from None
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
    except (ModelError, KeyError, TypeError, ValueError):
        return None


def _stat_or_none(path):
    try:
        return None if path is None else file_stat(path)
    except (OSError, ValueError):   # ValueError: a name with a NUL byte
        return None


