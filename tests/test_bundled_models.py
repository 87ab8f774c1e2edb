"""The models shipped in backend/models: present, complete, small, and unchanged in behaviour.

Reference outputs (tests/data/bundled/<name>.png, the fp32 engine's output for input.png, as
users get it: style nets mirrored out past their reach) are written by
``python tests/test_bundled_models.py --write-references`` when a model is retrained or the
engine's way of running it changes; the test then checks that every bundled model still
reproduces them.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.engine import Engine  # noqa: E402
from backend.model_store import BUNDLED_MODELS_DIR, ModelStore  # noqa: E402

DATA = REPO / "tests" / "data" / "bundled"
STYLES = {"starry_night", "wave", "the_scream", "composition_vii", "udnie"}
LITE = {f"{style}_lite": style for style in STYLES}   # lite net: its teacher (docs/models.md, "Lite nets")
UPSCALERS = {"sr_x4_feat": ("feat", 4), "sr_x4_pixel": ("pixel", 4), "sr_x8_feat": ("feat", 8),
             "sr_x2_pixel": ("pixel", 2)}
HOLDOUT = {line.strip() for line in (REPO / "trainer" / "recipes" / "sun_hays80_holdout.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")}
TRAINER = ("python -m trainer train ", "brushwork train ")   # the trainer's two entry points (README)


def bundled_store():
    return ModelStore(include_bundled=True, include_user=False)


def output_of(store, name):
    """The fp32 engine's output of the model for tests/data/bundled/input.png, rounded to 8 bits."""
    image = np.asarray(Image.open(DATA / "input.png").convert("RGB"), dtype=np.float32) / 255
    engine = Engine(store, device="cpu", precision="fp32")
    run = engine.stylize if store.get(name).kind == "style" else engine.upscale
    out, _ = run(image, None, name)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_every_expected_model_is_bundled_and_the_set_is_small():
    store = bundled_store()
    assert {m.name for m in store.list()} == STYLES | set(LITE) | set(UPSCALERS)
    assert not store.problems
    total = sum(p.stat().st_size for p in BUNDLED_MODELS_DIR.iterdir() if p.is_file())
    assert total <= 40e6


@pytest.mark.parametrize("name", sorted(STYLES | set(LITE) | set(UPSCALERS)))
def test_bundled_model_has_complete_metadata_and_its_recipe(name):
    meta = bundled_store().get(name).metadata
    recipe, data = meta["recipe"], meta["data"]
    assert meta["display_name"] and meta["display_name"] != name
    assert recipe["command"].startswith(TRAINER)
    assert "--holdout-list trainer/recipes/sun_hays80_holdout.txt" in recipe["command"]
    for key in ("iterations", "batch", "lr", "seed", "precision", "hardware", "wall_time_s", "weights_precision"):
        assert recipe[key] not in (None, ""), key
    assert set(data["held_out"]) == HOLDOUT
    if name in STYLES or name in LITE:
        style = LITE.get(name, name)
        assert meta["kind"] == "style" and meta["vgg"] == "caffe"
        assert data["style_image"] == f"../shared/data/styles/{style}.jpg" and len(data["style_sha256"]) == 64
    else:
        loss, scale = UPSCALERS[name]
        assert meta["kind"] == "sr" and meta["loss"] == loss and meta["scale"] == scale
    if name in LITE:     # distilled from its bundled teacher, run plain (it learnt line-free edges)
        assert meta["teacher"] == LITE[name] and meta["mirror_edges"] is False
        assert recipe["command"].startswith(tuple(f"{trainer}distill " for trainer in TRAINER))
        assert f" --teacher {LITE[name]} " in recipe["command"]
        assert recipe["teacher_sha256"] == bundled_store().get(LITE[name]).metadata["sha256"]


@pytest.mark.parametrize("name", sorted(STYLES | set(LITE) | set(UPSCALERS)))
def test_bundled_model_reproduces_its_reference_output(name):
    reference = np.asarray(Image.open(DATA / f"{name}.png").convert("RGB")).astype(int)
    output = output_of(bundled_store(), name).astype(int)
    assert output.shape == reference.shape
    difference = np.abs(output - reference)
    assert difference.max() <= 2 and difference.mean() < 0.1


def write_references():
    store = bundled_store()
    for info in store.list():
        Image.fromarray(output_of(store, info.name)).save(DATA / f"{info.name}.png")
        print("wrote", DATA / f"{info.name}.png")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-references"]:
        write_references()
    else:
        sys.exit(__doc__)
