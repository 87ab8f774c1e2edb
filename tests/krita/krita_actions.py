"""Run one of the plug-in's actions in a real Krita and read back what it left: the documents the
driver script builds and the layer pixels, states and messages it dumps (``scripts/run_action.py``)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

import harness
from helpers import shared_dir

SCRIPT = harness.HERE / "scripts" / "run_action.py"
BRUSHWORK = Path(sys.executable).parent / "brushwork"
U8_FORMAT = {"dtype": "u8", "channels": "BGRA", "transfer": "srgb"}
U16_LINEAR_FORMAT = {"dtype": "u16", "channels": "BGRA", "transfer": "linear"}
VGG_WEIGHTS = shared_dir() / "weights" / "vgg16_caffe_relu4_3.pth"   # where the daemon's trainer finds them


def image_bytes(height, width, dtype, seed, alpha=None):
    """A smooth random BGRA image as Krita stores it (u8 or u16), alpha opaque unless given."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 7.0)], -1) + rng.normal(0, 0.05, (height, width, 3))
    a = np.ones((height, width, 1), np.float32) if alpha is None else alpha[..., None]
    bgra = np.concatenate([np.clip(rgb, 0, 1)[..., ::-1], a], -1)
    peak = 255 if dtype == "u8" else 65535
    return np.round(bgra * peak).astype(np.uint8 if dtype == "u8" else "<u2").tobytes()


def run_in_krita(krita_home, tmp_path, params, **settings):
    """Run the driver script with ``params`` and plug-in ``settings``; return (result, undone) states."""
    states = run_steps_in_krita(krita_home, tmp_path, params, **settings)
    assert "result" in states, f"no result: {states}"
    return states["result"], states.get("undone")


def run_steps_in_krita(krita_home, tmp_path, params, **settings):
    """Run the driver script with ``params`` (maybe ``steps``) and plug-in ``settings``; return the
    docker and document states it dumped, by tag."""
    work = tmp_path / "krita"
    work.mkdir()
    script = work / "script.py"
    script.write_text(f"PARAMS = {json.dumps(params)!r}\nimport json as _j\nPARAMS = _j.loads(PARAMS)\n"
                      + SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    krita, home = krita_home
    shutil.copytree(home, work / "home", symlinks=True)
    harness.write_settings(work / "home", **settings)
    run = harness.run_krita(krita, work / "home", work, script, copy_home=False)
    error = work / "out" / "driver_error.txt"
    assert not error.exists(), error.read_text() + run.stdout[-3000:]
    states = {path.stem: json.loads(path.read_text()) for path in (work / "out").glob("*.json")}
    crash = work / "out" / "crash.txt"
    assert states, (f"Krita exited {run.returncode}:\n{run.stdout[-3000:]}"
                    + (f"\nPython stack at the crash:\n{crash.read_text()}" if crash.exists() else ""))
    return states


def layer_pixels(layer):
    return Path(layer["file"]).read_bytes()


def assert_close(actual, expected, dtype, tolerance_u8=1):
    """Byte buffers equal within ``tolerance_u8``/255 of full range."""
    kind = np.uint8 if dtype == "u8" else np.dtype("<u2")
    a, b = np.frombuffer(actual, kind).astype(np.int64), np.frombuffer(expected, kind).astype(np.int64)
    assert a.shape == b.shape
    tolerance = tolerance_u8 if dtype == "u8" else 257 * tolerance_u8
    assert np.abs(a - b).max() <= tolerance


def crop(buf, width, rect, bpp):
    x, y, w, h = rect
    rows = [buf[((y + r) * width + x) * bpp:((y + r) * width + x + w) * bpp] for r in range(h)]
    return b"".join(rows)


def photo_params(tmp_path, width, height, seed, **extra):
    """PARAMS for a one-layer 8-bit sRGB document named "Photo" holding a smooth random image."""
    pixels = image_bytes(height, width, "u8", seed=seed)
    (tmp_path / "layer.raw").write_bytes(pixels)
    return pixels, {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
                    "layers": [{"name": "Photo", "file": str(tmp_path / "layer.raw"),
                                "rect": [0, 0, width, height]}], **extra}
