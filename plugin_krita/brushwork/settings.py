"""The plug-in's settings: one dataclass of defaults, stored as JSON.

The file lives in Krita's app-data folder (``QStandardPaths.StandardLocation.AppDataLocation``), e.g.
``~/.local/share/krita/brushwork/settings.json``. Unknown keys and values of the wrong
type are ignored (the default is used), so an old or hand-edited file never breaks Krita.
The training and distillation options and the strength range come from the vendored protocol.
"""

import dataclasses
import json
import os
from dataclasses import dataclass, field

from .brushwork_client import protocol

OUTPUT_MODES = ("new_layer", "replace")
UPSCALE_LAYERS = ("all", "active")
UPSCALE_FACTORS = protocol.SR_SCALES
# train_style options the plug-in forwards from ``train_options`` (docs/protocol.md, "Training a style"):
# all but those the Train dialog asks for (iterations) or leaves to the daemon (time_limit)
TRAIN_OPTIONS = tuple(name for name in protocol.TRAIN_OPTIONS if name not in ("iterations", "time_limit"))


@dataclass
class Settings:
    endpoint: str = ""                  # "" = the local daemon at the default endpoint
    server_key: str = ""                # a remote daemon's public key file (server.key); "" = no keys
    client_key: str = ""                # this machine's secret key file (NAME.key_secret), with server_key
    manage_daemon: bool = True          # start `brushwork serve` on demand, stop it with Krita
    brushwork_executable: str = ""      # "" = the one recorded by the installer, else `brushwork` on PATH
    daemon_args: list = field(default_factory=list)   # extra `brushwork serve` arguments, e.g. ["--models", DIR]
    timeout_s: float = 60.0             # seconds of daemon silence before giving up
    style: str = ""                     # selected style model name
    strength: float = 1.0               # 0 = original, 1 = full style
    preserve_colors: bool = False
    draft: bool = False                 # stylize with the style's lite net (when it has one): fast drafts
    upscale_factor: int = 4
    output: str = "new_layer"           # "new_layer" above the active one, or "replace" its pixels
    upscale_layers: str = "all"         # "all" paint layers or only the "active" one
    train_name: str = ""                # name of the next style trained from a selection
    train_iterations: int = protocol.TRAIN_OPTIONS["iterations"].editor_default
    train_content: str = ""             # folder of photos to train on ("" = the daemon's own, if any)
    train_options: dict = field(default_factory=dict)   # more train_style options, e.g. {"size": 128}
    train_lite: bool = False            # also make a lite (fast) version of a new style
    lite_options: dict = field(default_factory=dict)    # distillation options of lite versions, e.g. {"pool": 64}
    lite_recipe: str = "single"         # how lite versions are made: "single" (quick) or "two-step" (the full recipe)

    def validated(self):
        """A copy with out-of-range values replaced by their defaults."""
        defaults = Settings()
        low, high = protocol.STRENGTH_RANGE
        fixed = dataclasses.replace(self, strength=min(high, max(low, float(self.strength))))
        if fixed.output not in OUTPUT_MODES:
            fixed.output = defaults.output
        if fixed.upscale_layers not in UPSCALE_LAYERS:
            fixed.upscale_layers = defaults.upscale_layers
        if fixed.upscale_factor not in UPSCALE_FACTORS:
            fixed.upscale_factor = defaults.upscale_factor
        if fixed.timeout_s <= 0:
            fixed.timeout_s = defaults.timeout_s
        fixed.train_options = {key: value for key, value in self.train_options.items()
                               if key in TRAIN_OPTIONS and protocol.TRAIN_OPTIONS[key].takes_type(value)}
        fixed.lite_options = {key: value for key, value in self.lite_options.items()
                              if key in protocol.DISTILL_OPTIONS and protocol.DISTILL_OPTIONS[key].takes_type(value)}
        if fixed.lite_recipe not in protocol.DISTILL_OPTIONS["recipe"].choices:
            fixed.lite_recipe = defaults.lite_recipe
        return fixed

    def lite_request(self):
        """The distillation options a lite version is asked for with (``protocol.lite_request``)."""
        return protocol.lite_request(self.lite_options, self.lite_recipe)


def from_dict(data):
    """Settings from a JSON object, keeping defaults for missing, unknown or mistyped keys."""
    settings = Settings()
    if not isinstance(data, dict):
        return settings
    for f in dataclasses.fields(Settings):
        if f.name not in data:
            continue
        value, default = data[f.name], getattr(settings, f.name)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is type(default):
            setattr(settings, f.name, value)
    return settings.validated()


def load(path):
    """Read settings from ``path``; a missing or unreadable file gives the defaults."""
    try:
        with open(path, encoding="utf-8") as f:
            return from_dict(json.load(f))
    except (OSError, ValueError):
        return Settings()


def save(settings, path):
    """Write settings to ``path`` atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(settings), f, indent=2)
    os.replace(tmp, path)


def default_path():
    """``<Krita app data>/brushwork/settings.json`` (needs a running QApplication)."""
    from .qt import QStandardPaths
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return os.path.join(base, "brushwork", "settings.json")
