"""The daemon's models as the plug-in knows them, even while no daemon answers (pure Python).

A dialog lists the models the daemon served last time (``brushwork-models.json`` in GIMP's
config folder, written whenever the daemon answered) or, before that, the models bundled with
the brushwork installation the plug-in came from (recorded by the installer). Users and
scripts may name a model by its display name ("Starry Night (van Gogh)"); :func:`resolve`
turns that into the model name the daemon expects.
"""

import json
import os

CACHE_NAME = "brushwork-models.json"
INSTALL_RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "installed.json")
FIELDS = ("name", "display_name", "kind", "scale", "iterations", "partly_trained", "planned_iterations", "teacher",
          "lite")


def _summary(models):
    return [{k: m[k] for k in FIELDS if k in m} for m in models if isinstance(m, dict) and m.get("name")]


def remember(config_dir, models):
    """Store the daemon's model list (names, display names, kinds, scales) for later dialogs."""
    os.makedirs(config_dir, exist_ok=True)
    path = os.path.join(config_dir, CACHE_NAME)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(_summary(models), f)
    os.replace(path + ".tmp", path)


def _read_list(path, key=None):
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return []
    if key is not None:
        stored = stored.get(key) if isinstance(stored, dict) else None
    return _summary(stored) if isinstance(stored, list) else []


def last_known(config_dir):
    """The models the daemon served last time, else the bundled ones the installer recorded, else []."""
    return _read_list(os.path.join(config_dir, CACHE_NAME)) or _read_list(INSTALL_RECORD, "bundled_models")


def choices(models, kind):
    """``[(name, display name and training note)]`` of the models of ``kind`` ("style" or "sr"). A lite
    net whose teacher is listed is left out: Stylize's Draft switch runs it for that style."""
    names = {m["name"] for m in models if m.get("kind") == kind}
    return [(m["name"], (m.get("display_name") or m["name"]) + training_note(m)) for m in models
            if m.get("kind") == kind and m.get("teacher") not in names]


def draft_note(models, style):
    """What the Draft switch does for ``style``: which lite net it runs, or how to make one."""
    for m in models:
        if m["name"] == style and (m.get("lite") or m.get("teacher")):
            return f"Draft runs {m.get('lite') or style}, a lite net: several times faster, a little less faithful."
    return f"{style} has no lite net for drafts: make one with `brushwork train distill --teacher {style}`."


def training_note(model):
    """' (partly trained: 300 of 2,000 iterations)' for a model stopped early, else ''."""
    if not model.get("partly_trained"):
        return ""
    return f" (partly trained: {model.get('iterations') or 0:,} of {model.get('planned_iterations') or 0:,} iterations)"


def resolve(text, models, kind):
    """The model name ``text`` means: a model name as it is, or a display name (any case) of a
    ``kind`` model. Unknown text is returned unchanged, for the daemon to refuse with its list."""
    text = text.strip()
    if any(m["name"] == text for m in models):
        return text
    wanted = text.casefold()
    for m in models:
        if m.get("kind") == kind and (m.get("display_name") or m["name"]).casefold() == wanted:
            return m["name"]
    return text
