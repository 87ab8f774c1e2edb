"""Turning a trained net into a model the daemon serves (backend.model_save.save_model)."""

import hashlib
import re
from pathlib import Path

from backend.model_files import MAX_NAME_LENGTH, NAME_PATTERN
from backend.model_save import save_model
from backend.model_store import user_models_dir


def model_name(text):
    """A valid model name from free text ('The Starry Night.jpg' -> 'the_starry_night')."""
    name = re.sub(r"[^a-z0-9_.-]+", "_", str(text).lower()).strip("_.-")[:MAX_NAME_LENGTH] or "model"
    if not NAME_PATTERN.match(name):
        raise ValueError(f"cannot make a model name from {text!r}")
    return name


def check_model_name(name):
    """Raise ValueError unless ``name`` is a valid model name."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid model name {name!r}: use lower-case letters, digits, '_', '.', '-' "
                         f"(at most {MAX_NAME_LENGTH}, starting with a letter or digit)")
    return name


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model(net, name, display_name, loss, vgg, recipe, data, thumbnail, out_dir=None, extra=None):
    """Save ``net`` (any device, any memory format) as model ``name`` into ``out_dir``
    (default: the user models dir); return the JSON path. ``extra``: more top-level metadata
    keys (a lite net's ``teacher``)."""
    directory = Path(out_dir) if out_dir is not None else user_models_dir()
    metadata = {"display_name": display_name or name.replace("_", " ").title(), "loss": loss, "vgg": vgg,
                "recipe": recipe, "data": data, **(extra or {})}
    return save_model(directory, name, net, metadata, thumbnail=thumbnail)
