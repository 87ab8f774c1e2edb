"""Copy trained models into backend/models (the bundled set) in half precision.

    python tools/bundle_models.py SOURCE_DIR NAME[=DISPLAY NAME] ... [--out backend/models]

Each model is re-saved with float16 weights if its output on the three shared content
photos (style) or on their downscaled versions (SR) then differs from the float32 model's
by at most 1/255 (8-bit rounding of both), else with float32 weights; the figure goes
into the recipe. Data paths recorded on the training machine are rewritten relative to the checkout
(``../shared/...``). Models trained with ``brushwork train`` only.
"""

import argparse
import copy
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.model_save import save_model  # noqa: E402
from backend.model_store import ModelStore  # noqa: E402

CONTENT = ROOT.parent / "shared" / "data" / "content"
SHARED_PATH = re.compile(r"^/.*?/shared/")


def relative_paths(value):
    """``value`` with absolute ``.../shared/...`` paths turned into ``../shared/...``."""
    if isinstance(value, str):
        return SHARED_PATH.sub("../shared/", value)
    if isinstance(value, dict):
        return {k: relative_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v) for v in value]
    return value


def test_inputs(kind, scale):
    """The three content photos at 256 px (style) or 256/scale px (SR), as 1x3xHxW tensors."""
    size = 256 if kind == "style" else 256 // scale
    for path in sorted(CONTENT.glob("*.jpg")):
        image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
        yield torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def to_bytes(output):
    return output.clamp(0, 1).mul(255).round().byte()


def max_difference(net_a, net_b, kind, scale):
    """Largest difference in 8-bit levels between two nets' outputs on the test inputs."""
    worst = 0
    with torch.inference_mode():
        for x in test_inputs(kind, scale):
            a, b = to_bytes(net_a(x)).int(), to_bytes(net_b(x)).int()
            worst = max(worst, int((a - b).abs().max()))
    return worst


def bundle(source, name, display_name, out_dir):
    store = ModelStore(extra_dirs=[source], include_bundled=False, include_user=False)
    info = store.get(name)
    net = store.load(info).float().eval()
    meta = relative_paths(copy.deepcopy(info.metadata))
    for key in ("format", "name", "kind", "scale", "architecture", "weights", "sha256"):
        meta.pop(key, None)
    if display_name:
        meta["display_name"] = display_name
    thumbnail = Image.open(Path(source) / f"{name}.png") if (Path(source) / f"{name}.png").is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        save_model(tmp, name, net, meta, thumbnail, half=True)
        half = ModelStore(extra_dirs=[tmp], include_bundled=False, include_user=False)
        difference = max_difference(net, half.load(half.get(name)).float().eval(), info.kind, info.scale)
    half = difference <= 1
    meta["recipe"]["weights_precision"] = (
        f"float16: output within {difference}/255 of float32 on shared/data/content" if half else
        f"float32: float16 weights would change the output by up to {difference}/255")
    path = save_model(out_dir, name, net, meta, thumbnail, half=half)
    print(f"{name}: {path} ({(Path(out_dir) / f'{name}.safetensors').stat().st_size / 1e6:.1f} MB, "
          f"{'float16' if half else 'float32'}, float16 difference {difference}/255)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="models dir the trainer exported into")
    parser.add_argument("models", nargs="+", help="NAME or NAME=DISPLAY NAME")
    parser.add_argument("--out", type=Path, default=ROOT / "backend" / "models")
    args = parser.parse_args()
    for spec in args.models:
        name, _, display = spec.partition("=")
        bundle(args.source, name, display or None, args.out)


if __name__ == "__main__":
    main()
