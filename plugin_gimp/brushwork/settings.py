"""The plug-in's settings: a small JSON file in GIMP's config folder (pure Python).

    {"endpoint": "", "manage_daemon": true, "daemon_path": "", "timeout_s": 60,
     "server_key": "", "client_key": ""}

``endpoint`` empty means the client's default (``BRUSHWORK_ENDPOINT`` or the local IPC socket).
``server_key`` (a remote daemon's public key file) and ``client_key`` (this machine's secret
key file) turn on CURVE authentication for a daemon on another machine (docs/security.md).
With ``manage_daemon`` on, the plug-in starts ``<daemon_path> serve`` when no daemon answers;
an empty ``daemon_path`` means the ``brushwork`` program recorded by the installer, else the
one on PATH.

The file may also hold ``"train_options"``, e.g. ``{"size": 128, "channels": 16}``: more
options for Train Style (see TRAIN_OPTIONS; the vendored protocol describes each), and
``"lite_options"``, e.g. ``{"pool": 64}``: the distillation options of the lite version Train
Style makes with ``lite`` on (see LITE_OPTIONS). The Settings dialog does not show them and keeps them.
"""

import json
import os

import protocol

FILE_NAME = "brushwork.json"
DEFAULTS = {"endpoint": "", "manage_daemon": True, "daemon_path": "", "timeout_s": 60.0, "server_key": "",
            "client_key": ""}
# train_style options ``train_options`` may set (docs/protocol.md, "Training a style"): all but
# those the Train Style procedure has arguments for
TRAIN_OPTIONS = tuple(name for name in protocol.TRAIN_OPTIONS if name not in ("iterations", "time_limit"))
# distill options ``lite_options`` may set (docs/protocol.md, "Lite versions"): all but the recipe,
# which the Train Style procedure has an argument for
LITE_OPTIONS = tuple(name for name in protocol.DISTILL_OPTIONS if name != "recipe")


def settings_path(config_dir):
    """Where the settings live inside GIMP's config folder (``Gimp.directory()``)."""
    return os.path.join(config_dir, FILE_NAME)


def _stored(path):
    """The file's JSON object ({} when there is no file); ValueError naming the file."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read brushwork settings {path}: {e}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"brushwork settings {path} must hold a JSON object")
    return stored


def load(config_dir):
    """The settings, defaults filled in; ValueError naming the file if it is unreadable."""
    path = settings_path(config_dir)
    settings = dict(DEFAULTS)
    settings.update({k: v for k, v in _stored(path).items() if k in DEFAULTS})
    settings["endpoint"] = str(settings["endpoint"] or "").strip()
    for key in ("daemon_path", "server_key", "client_key"):
        settings[key] = str(settings[key] or "").strip()
    settings["manage_daemon"] = bool(settings["manage_daemon"])
    try:
        settings["timeout_s"] = float(settings["timeout_s"])
    except (TypeError, ValueError):
        raise ValueError(f"brushwork settings {path}: timeout_s must be a number") from None
    return settings


def load_train_options(config_dir):
    """The file's ``train_options`` ({} when absent); ValueError naming the file when they are wrong."""
    return _load_options(config_dir, "train_options", TRAIN_OPTIONS, protocol.TRAIN_OPTIONS)


def load_lite_options(config_dir):
    """The file's ``lite_options`` ({} when absent); ValueError naming the file when they are wrong."""
    return _load_options(config_dir, "lite_options", LITE_OPTIONS, protocol.DISTILL_OPTIONS)


def _load_options(config_dir, key, allowed, described):
    path = settings_path(config_dir)
    options = _stored(path).get(key, {})
    if not isinstance(options, dict) or not all(name in allowed and described[name].takes_type(value)
                                                for name, value in options.items()):
        raise ValueError(f"brushwork settings {path}: {key} must map some of {', '.join(allowed)} "
                         f"to numbers (flip: to true or false), got {options!r}")
    return options


def save(config_dir, settings, train_options=None, lite_options=None):
    """Write the settings (and ``train_options`` and ``lite_options``, if any) atomically (temp
    file + rename); return the path."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in settings.items() if k in DEFAULTS})
    if train_options:
        merged["train_options"] = train_options
    if lite_options:
        merged["lite_options"] = lite_options
    os.makedirs(config_dir, exist_ok=True)
    path = settings_path(config_dir)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=2)
    os.replace(tmp, path)
    return path
