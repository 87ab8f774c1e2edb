"""The GIMP tests' cases: test pixels in each precision and one image + procedure call per case."""

import numpy as np
from helpers import random_image

from backend.pixels import srgb_to_linear

# dump/read format per precision: numpy dtype, babl type, linear?, wire dtype, comparison tolerance
PRECISIONS = {
    "U8_NON_LINEAR": (np.uint8, "u8", False, "u8", 1),
    "U16_NON_LINEAR": (np.uint16, "u16", False, "u16", 1),
    "HALF_LINEAR": (np.float16, "half", True, "f16", 1e-3),
    "FLOAT_LINEAR": (np.float32, "float", True, "f32", 1e-5),
}


def make_pixels(precision, width, height, alpha, seed):
    """Test pixels in a precision's own type: smooth colours, alpha ramp (1 at the left edge)."""
    dtype, _, linear, _, _ = PRECISIONS[precision]
    rgb = random_image(height, width, seed)
    if linear:
        rgb = srgb_to_linear(rgb)
    if alpha:
        ramp = np.broadcast_to(np.linspace(1.0, 0.2, width, dtype=np.float32), (height, width))[..., None]
        rgb = np.concatenate([rgb, ramp], axis=-1)
    if np.dtype(dtype).kind == "u":
        return np.round(rgb * np.iinfo(dtype).max).astype(dtype)
    return rgb.astype(dtype)


def wire_format(precision, alpha):
    _, _, linear, wire, _ = PRECISIONS[precision]
    return {"dtype": wire, "channels": "RGBA" if alpha else "RGB", "transfer": "linear" if linear else "srgb"}


class Case:
    """One image + one procedure call; knows its inputs and builds the driver's JSON."""

    def __init__(self, name, precision, procedure, args, layers, size, active=(0,), selection=None,
                 settings=None, settings_file=None, gray=False, interactive=False):
        self.name, self.precision, self.selection = name, precision, selection
        self.size = size
        self.layers = []  # (pixels array, offset)
        for i, (w, h, alpha, offset) in enumerate(layers):
            self.layers.append((make_pixels(precision, w, h, alpha, seed=len(name) + i), offset))
        _, babl_type, linear, _, _ = PRECISIONS[precision]
        self.spec = {
            "name": name, "precision": precision, "width": size[0], "height": size[1],
            "dump": {"type": babl_type, "linear": linear}, "procedure": "plug-in-brushwork-" + procedure,
            "args": args, "active": list(active), "selection": selection, "settings": settings,
            "settings_file": settings_file, "gray": gray, "interactive": interactive,
            "layers": [{"name": f"layer{i}", "file": f"{name}-in{i}.raw", "width": p.shape[1], "height": p.shape[0],
                        "alpha": p.shape[2] == 4, "offset": list(offset)} for i, (p, offset) in enumerate(self.layers)],
        }

    def inputs(self):
        return {f"{self.name}-in{i}.raw": p.tobytes() for i, (p, _) in enumerate(self.layers)}
