"""Training a style from Krita: the Train dialog's estimate, progress in the docker, the model in
the gallery, and "Stop and keep" (see ``conftest.py`` for the Kritas)."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.client import Client
from helpers import training_photos

sys.path.insert(0, str(Path(__file__).resolve().parent))
from krita_actions import VGG_WEIGHTS, crop, image_bytes, layer_pixels, run_steps_in_krita  # noqa: E402

pytestmark = pytest.mark.krita


SELECTED = [8, 6, 24, 20]   # x, y, w, h: the style image sent to the daemon


def train_in_krita(krita_home, tmp_path, endpoint, dialog, **settings):
    """Select a rectangle of a 48x40 painting, press the plug-in's Train action against ``endpoint``
    and fill in its dialog with ``dialog`` (name, iterations, optional content, lite, make_lite and
    stop_after: the driver's "train_dialog" step; a list: one after the other); the state dumped
    once the trainings ended."""
    width, height = 48, 40
    pixels = image_bytes(height, width, "u8", seed=6)
    (tmp_path / "layer.raw").write_bytes(pixels)
    params = {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
              "selection": [SELECTED + [255]],
              "layers": [{"name": "Painting", "file": str(tmp_path / "layer.raw"), "rect": [0, 0, width, height]}],
              "steps": [*({"do": "train_dialog", **one} for one in (dialog if isinstance(dialog, list) else [dialog])),
                        {"do": "dump", "tag": "result"}]}
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=endpoint, manage_daemon=False, **settings)
    assert "result" in states, f"no result: {states}"
    result = states["result"]
    assert [layer["name"] for layer in result["layers"]] == ["Painting"]
    assert layer_pixels(result["layers"][0]) == pixels     # training never changes the document
    return result, pixels, width


def measured_speed(text):
    """The seconds per iteration the Train dialog shows ('2,000 iterations take about 1 h (1.8 s each, ...')."""
    match = re.search(r"([\d,]+) iterations take about (.+?) \(([\d.e+-]+) s each, measured on (.+?)\)", text)
    assert match, text
    return float(match.group(3))


# tiny sizes so it takes seconds; "vgg_weights" is no train_style option, so the plug-in drops it
TINY_TRAINING = {"size": 32, "style_size": 32, "batch": 1, "channels": 8, "blocks": 1, "vgg_weights": "/etc/passwd"}


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_train_style_from_selection(krita_home, training_daemon, tmp_path):
    """The Train dialog shows the time measured on the daemon's device, then the style trains from
    the selection on the daemon's own photos, with progress, and joins the gallery."""
    result, pixels, width = train_in_krita(krita_home, tmp_path, training_daemon,
                                           {"name": "From Krita", "iterations": 3}, train_options=TINY_TRAINING)

    assert result["error"] == ""
    assert measured_speed(result["train"]["estimate"]) > 0 and result["train"]["start_enabled"]
    assert "stops it at any time and keeps what it has learnt" in result["train"]["estimate"]
    assert "trained the style 'From Krita'" in result["status"]
    counted = [p for p in result["progress"] if p[1] > 0]
    assert counted and counted[-1][:2] == [3, 3]                     # iterations, as the daemon counts them
    assert all(bar_maximum == 3 for _, _, _, bar_maximum, _ in counted)  # the docker's progress bar
    assert any(status.startswith("training: loss") for _, _, status, _, _ in counted)
    assert "from_krita" in result["gallery"]

    model = {m["name"]: m for m in Client(training_daemon).info()["models"]}["from_krita"]
    assert model["display_name"] == "From Krita" and model["kind"] == "style"
    assert model["recipe"]["iterations"] == 3 and model["architecture"]["channels"] == 8
    # the daemon trained on exactly the selected pixels (Krita's BGRA turned into RGB)
    style = np.asarray(Image.open(model["data"]["style_image"]))
    selected = np.frombuffer(crop(pixels, width, SELECTED, 4), np.uint8).reshape(SELECTED[3], SELECTED[2], 4)
    assert np.array_equal(style, selected[..., 2::-1])


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_train_on_own_photos_with_a_daemon_started_plainly_and_stop_keeping_the_model(krita_home, daemon,
                                                                                      tmp_path):
    """`make serve` gives the daemon no --content: the dialog asks for a folder (Start disabled until
    there is one), trains on the artist's photos, and "Stop and keep" saves a partly trained style
    that the gallery marks."""
    photos = training_photos(tmp_path / "my photos")
    result, _, _ = train_in_krita(krita_home, tmp_path, daemon,
                                  {"name": "Own Photos", "iterations": 100_000, "content": str(photos),
                                   "stop_after": 2}, train_options=TINY_TRAINING)

    train = result["train"]
    assert "Choose a folder of photos to train on" in train["first_estimate"] and not train["start_enabled_first"]
    assert measured_speed(train["estimate"]) > 0 and "Training on 3 photos" in train["estimate"]
    assert "100,000 iterations take about" in train["estimate"] and train["start_enabled"]
    assert train["button_while_training"] == "Stop and keep"
    assert result["error"] == "", result["error"]
    model = {m["name"]: m for m in Client(daemon).info()["models"]}["own_photos"]
    assert model["data"]["content"] == str(photos) and model["partly_trained"] is True
    done = model["recipe"]["iterations"]
    assert 2 <= done < 100_000 and model["recipe"]["stopped_early"] is True
    assert f"(partly trained: {done:,} of 100,000 iterations)" in result["status"]
    assert f"Own Photos (partly trained: {done:,} of 100,000 iterations)" in result["gallery_labels"]


# a lite version in seconds: 4 teacher examples of 32 px, a tiny student, 2 iterations
TINY_LITE = {"iterations": 2, "size": 32, "pool": 4, "batch": 2, "channels": 4, "blocks": 1}
# one time limit for both lite versions: ample for the quick recipe's 2 iterations on a busy
# machine, and a few times shorter than the 2,000 iterations of the full recipe's first part
# (about 30 s at 128 px on 2 cores)
LITE_WITH_TIME_LIMIT = {**TINY_LITE, "size": 128, "time_limit": 10}


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_train_a_style_with_its_lite_version_then_a_lite_version_of_an_installed_style(krita_home,
                                                                                       training_daemon, tmp_path):
    """"Also make a lite (fast) version" trains the style, then distils its lite version, with
    progress naming each phase; then "Make lite version" distils one of an installed style with
    the full recipe (its first part, cut short by the settings' time limit). Each is marked with
    its teacher and is its style's Draft, not a gallery entry of its own."""
    result, _, _ = train_in_krita(krita_home, tmp_path, training_daemon,
                                  [{"name": "Quick", "iterations": 2, "lite": True},
                                   {"make_lite": "mosaic", "lite_recipe": "two-step"}],
                                  train_options=TINY_TRAINING, lite_options=LITE_WITH_TIME_LIMIT)

    assert result["error"] == "", result["error"]
    messages = [status for _, _, status, _, _ in result["progress"]]
    assert any(m.startswith("training: style: loss") for m in messages)
    assert any(m.startswith("training: lite version: the teacher's examples") for m in messages)
    assert result["train"]["make_lite_enabled"] and "mosaic" in result["train"]["lite_teachers"]
    assert "quick_lite" not in result["train"]["lite_teachers"]   # a lite version is no teacher
    assert re.search(r"made 'Mosaic \(lite\)' \(partly trained: [\d,]+ of 2,000 iterations\), the lite version of",
                     result["status"]), result["status"]     # the full recipe's first part, stopped by its time limit
    models = {m["name"]: m for m in Client(training_daemon).info()["models"]}
    assert models["quick_lite"]["recipe"]["teacher"] == "quick" and models["quick"]["recipe"]["iterations"] == 2
    assert models["mosaic_lite"]["recipe"]["teacher"] == "mosaic"
    assert models["mosaic_lite"]["architecture"]["blocks"] == 1 and models["quick_lite"]["recipe"]["iterations"] == 2
    full = models["mosaic_lite"]["recipe"]    # the settings' iterations are the quick recipe's only
    assert full["command"].endswith("# part step1, 1 of 7") and full["stopped_by_time_limit"] is True
    assert any(m.startswith("training: lite version: part 1 of 7: loss") for m in messages)
    assert {"quick", "mosaic"} <= set(result["gallery"])
    assert not {"quick_lite", "mosaic_lite"} & set(result["gallery"])


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_cancel_during_the_lite_version_keeps_the_style_in_the_gallery(krita_home, training_daemon, tmp_path):
    """Cancel while the lite version distils: the style trained before it is saved, joins the
    gallery at once and the docker says the lite version was not made."""
    result, _, _ = train_in_krita(krita_home, tmp_path, training_daemon,
                                  {"name": "Kept In Krita", "iterations": 2, "lite": True, "cancel_on": "lite version"},
                                  train_options=TINY_TRAINING, lite_options={**TINY_LITE, "iterations": 100_000})

    assert result["error"] == "", result["error"]
    assert "trained the style 'Kept In Krita'" in result["status"]
    assert "its lite version was not made (training was cancelled)" in result["status"]
    models = {m["name"] for m in Client(training_daemon).info()["models"]}
    assert "kept_in_krita" in models and "kept_in_krita_lite" not in models
    assert "kept_in_krita" in result["gallery"]
