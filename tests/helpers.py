"""Helpers shared by the test modules (importable as ``tests.helpers`` or ``helpers``)."""

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from backend.model_save import save_model
from backend.nets import build_net, default_architecture


def shared_dir():
    """The read-only shared data dir: $BRUSHWORK_SHARED or ../shared beside the checkout."""
    return Path(os.environ.get("BRUSHWORK_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


def training_photos(directory, count=3):
    """Copy the first ``count`` photos of the shared Sun-Hays set into ``directory``; return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for photo in sorted((shared_dir() / "data" / "train" / "sun_hays80").glob("*.jpg"))[:count]:
        shutil.copy(photo, directory / photo.name)
    return directory


def make_model(directory, name, kind="style", scale=1, seed=0, thumbnail=None, architecture=None, **metadata):
    """Save a randomly initialised (deterministic for ``seed``) style or SR model; return its JSON path.

    ``architecture`` adds to (or overrides) the paper's. SR nets get non-trivial BatchNorm
    running statistics so that they are not identities.
    """
    torch.manual_seed(seed)
    net = build_net({**default_architecture(kind, scale), **(architecture or {})})
    if kind == "sr":
        generator = torch.Generator().manual_seed(seed)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    meta = {"display_name": name.replace("_", " ").title(), "vgg": None,
            "loss": "style" if kind == "style" else "feat",
            "recipe": {"command": "tests.helpers.make_model", "iterations": 0, "seed": seed},
            "data": {}}
    meta.update(metadata)
    return save_model(directory, name, net.eval(), meta, thumbnail=thumbnail)


def distill_lite_model(out_dir, run_dir, teacher="udnie"):
    """Make a real lite net of the bundled style ``teacher`` with the real trainer,
    at a size that takes seconds: ``train distill`` on three shared photos; return its JSON path
    (``out_dir/TEACHER_lite.json``)."""
    from trainer.cli import main
    photos = training_photos(Path(run_dir) / "photos")
    status = main(["train", "distill", "--teacher", teacher, "--content", str(photos), "--recipe", "single",
                   "--size", "32", "--pool", "4", "--batch", "2", "--iterations", "2", "--device", "cpu",
                   "--precision", "fp32", "--out", str(out_dir), "--run-dir", str(Path(run_dir) / "run")])
    assert status == 0, f"train distill --teacher {teacher} failed"
    return Path(out_dir) / f"{teacher}_lite.json"


def random_image(height, width, seed=0):
    """A smooth-ish random float32 HxWx3 image in [0, 1] (noise plus gradients, like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 17.0) * np.cos(y / 23.0)], axis=-1)
    return np.clip(base + rng.normal(0, 0.05, (height, width, 3)), 0, 1).astype(np.float32)


def photo(height, width, name="chicago"):
    """A content photo from shared/ resized to width x height, float32 HxWx3 in [0, 1]."""
    from PIL import Image
    with Image.open(shared_dir() / "data" / "content" / f"{name}.jpg") as img:
        img = img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        return np.asarray(img, np.float32) / 255


def psnr(a, b):
    """PSNR in dB of two [0, 1] images."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)
