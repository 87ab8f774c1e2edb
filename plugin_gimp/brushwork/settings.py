"""The plug-in's settings: a small JSON file in GIMP's config folder (pure Python).

    {"endpoint": "", "manage_daemon": true, "daemon_path": "", "timeout_s": 60}

``endpoint`` empty means the client's default (``BRUSHWORK_ENDPOINT`` or the local IPC socket).
With ``manage_daemon`` on, the plug-in starts ``<daemon_path> serve`` when no daemon answers;
an empty ``daemon_path`` means the ``brushwork`` program recorded by the installer, else the
one on PATH.
"""

import json
import os

FILE_NAME = "brushwork.json"
DEFAULTS = {"endpoint": "", "manage_daemon": True, "daemon_path": "", "timeout_s": 60.0}


def settings_path(config_dir):
    """Where the settings live inside GIMP's config folder (``Gimp.directory()``)."""
    return os.path.join(config_dir, FILE_NAME)


def load(config_dir):
    """The settings, defaults filled in; ValueError naming the file if it is unreadable."""
    path = settings_path(config_dir)
    settings = dict(DEFAULTS)
    if not os.path.exists(path):
        return settings
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read brushwork settings {path}: {e}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"brushwork settings {path} must hold a JSON object")
    settings.update({k: v for k, v in stored.items() if k in DEFAULTS})
    settings["endpoint"] = str(settings["endpoint"] or "").strip()
    settings["daemon_path"] = str(settings["daemon_path"] or "").strip()
    settings["manage_daemon"] = bool(settings["manage_daemon"])
    try:
        settings["timeout_s"] = float(settings["timeout_s"])
    except (TypeError, ValueError):
        raise ValueError(f"brushwork settings {path}: timeout_s must be a number") from None
    return settings


def save(config_dir, settings):
    """Write the settings atomically (temp file + rename); return the file's path."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in settings.items() if k in DEFAULTS})
    os.makedirs(config_dir, exist_ok=True)
    path = settings_path(config_dir)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=2)
    os.replace(tmp, path)
    return path
