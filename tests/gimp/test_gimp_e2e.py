"""End-to-end: the brushwork procedures run NON-INTERACTIVELY in real GIMP 3.0 and 3.2 (chroots).

For each GIMP version one gimp-console batch run executes every case (see gimp_driver.py); the tests compare
GIMP's pixels with what the same daemon returns when called directly with the same pixels.
Run with: ``.venv/bin/python -m pytest -m gimp tests/gimp``.
"""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from gimp_cases import PRECISIONS, Case, wire_format
from gimp_harness import DEAD_ENDPOINT, install_plugin, run_cases
from helpers import shared_dir

from backend.client import Client

pytestmark = pytest.mark.gimp

VGG_WEIGHTS = shared_dir() / "weights" / "vgg16_caffe_relu4_3.pth"   # where the daemon's trainer finds them

TRAIN_SELECTION = (4, 6, 24, 20)   # x, y, w, h of the style image
# tiny sizes so it takes seconds (the settings file's train_options)
TINY_TRAINING = {"size": 32, "style_size": 32, "batch": 1, "channels": 8, "blocks": 1}
# a lite version in seconds: 4 teacher examples of 32 px, a tiny student, 2 iterations
TINY_LITE = {"iterations": 2, "size": 32, "pool": 4, "batch": 2, "channels": 4, "blocks": 1}


def build_cases(training_endpoint, local_endpoint, photos):
    u8, u16, half, f32 = "U8_NON_LINEAR", "U16_NON_LINEAR", "HALF_LINEAR", "FLOAT_LINEAR"
    style = {"style": "mosaic"}
    return [
        Case("stylize_u8", u8, "stylize", style, [(40, 32, True, (0, 0))], (40, 32)),
        Case("stylize_u8_sel", u8, "stylize", style, [(40, 32, True, (0, 0))], (40, 32), selection=(8, 6, 20, 14)),
        Case("stylize_u16", u16, "stylize", {"style": "starry_night", "strength": 0.7, "preserve-colors": True},
             [(36, 28, False, (0, 0))], (36, 28)),
        Case("stylize_f32", f32, "stylize", style, [(32, 24, True, (0, 0))], (32, 24)),
        Case("stylize_half_sel", half, "stylize", style, [(32, 24, True, (0, 0))], (32, 24), selection=(4, 4, 16, 12)),
        Case("stylize_gray_u8", u8, "stylize", style, [(32, 24, True, (0, 0))], (32, 24), gray=True),
        Case("upscale_all_u8", u8, "upscale-image", {"scale": "2", "layers": "all"},
             [(24, 20, True, (0, 0)), (16, 12, False, (4, 6))], (24, 20), selection=(2, 2, 5, 5)),
        Case("upscale_active_u16", u16, "upscale-image", {"scale": "4", "layers": "active"},
             [(20, 16, True, (0, 0)), (12, 10, True, (3, 2))], (20, 16), active=(1,)),
        Case("upscale_sel_image_u8", u8, "upscale-selection", {"scale": "2", "output": "new-image"},
             [(32, 24, True, (0, 0))], (32, 24), selection=(4, 4, 12, 10)),
        Case("upscale_sel_layer_f32", f32, "upscale-selection", {"scale": "2", "output": "new-layer"},
             [(32, 24, True, (0, 0))], (32, 24), selection=(4, 4, 12, 10)),
        # a display name, as a user types it (the test model starry_night is "Starry Night")
        Case("stylize_display_name", u8, "stylize", {"style": "starry night"}, [(24, 20, True, (0, 0))], (24, 20)),
        Case("unknown_style", u8, "stylize", {"style": "no_such_style"}, [(16, 16, True, (0, 0))], (16, 16)),
        # Draft runs the style's lite net (the daemon serves udnie_lite, a real one); mosaic (a test model) has none
        Case("stylize_draft", u8, "stylize", {"style": "udnie", "draft": True}, [(28, 24, True, (0, 0))], (28, 24)),
        Case("draft_without_lite", u8, "stylize", {"style": "mosaic", "draft": True}, [(16, 16, True, (0, 0))],
             (16, 16)),
        # the test daemon has no --content: it refuses to train
        Case("train_refused", u8, "train-style", {"name": "refused_style", "iterations": 2},
             [(32, 32, False, (0, 0))], (32, 32), selection=TRAIN_SELECTION),
        # from here on the settings file points at the training daemon
        Case("train_style", u8, "train-style", {"name": "GIMP Test Style", "iterations": 3},
             [(32, 32, False, (0, 0))], (32, 32), selection=TRAIN_SELECTION,
             settings_file={"endpoint": training_endpoint, "manage_daemon": False, "train_options": TINY_TRAINING}),
        # with lite on, the same request then distils the new style's lite version (lite_options),
        # here with the full recipe: its first part, cut short by the lite_options' time limit
        Case("train_style_lite", u8, "train-style", {"name": "GIMP Drafted", "iterations": 2, "lite": True,
                                                     "lite-recipe": "two-step"},
             [(32, 32, False, (0, 0))], (32, 32), selection=TRAIN_SELECTION,
             settings_file={"endpoint": training_endpoint, "manage_daemon": False, "train_options": TINY_TRAINING,
                            "lite_options": {**TINY_LITE, "time_limit": 2}}),
        # a daemon as `make serve` starts it (no --content): the artist's own photos, stopped after
        # 3 s of training (time-limit is in minutes) and kept
        Case("train_own_photos", u8, "train-style", {"name": "GIMP Own Photos", "iterations": 100_000,
                                                     "photos": photos, "time-limit": 0.05},
             [(32, 32, False, (0, 0))], (32, 32), selection=TRAIN_SELECTION,
             settings_file={"endpoint": local_endpoint, "manage_daemon": False, "train_options": TINY_TRAINING,
                            "lite_options": TINY_LITE}),
        # last: it points the plug-in's settings at a port nobody listens on. The job timeout is an
        # hour, so were the plug-in to wait for it the GIMP run would be killed and the test fail.
        Case("daemon_down", u8, "stylize", style, [(16, 16, True, (0, 0))], (16, 16),
             settings={"endpoint": DEAD_ENDPOINT, "manage-daemon": False, "timeout": 3600.0}),
    ]


@pytest.fixture(scope="module")
def gimp_run(gimp_chroot, gimp_daemon, gimp_training_daemon, gimp_local_daemon, gimp_job_dir):
    host, _ = gimp_job_dir
    install_plugin(gimp_chroot, host / "home")
    cases = build_cases(gimp_training_daemon, *gimp_local_daemon)
    inputs = {}
    for case in cases:
        inputs.update(case.inputs())
    start = time.monotonic()
    results = run_cases(gimp_chroot, gimp_job_dir, gimp_daemon, [c.spec for c in cases], inputs)
    print(f"\nGIMP batch run: {time.monotonic() - start:.1f} s; per procedure call (s): "
          + ", ".join(f"{name} {r['seconds']:.2f}" for name, r in results.items() if "seconds" in r))
    return {c.name: c for c in cases}, results, host, Client(gimp_daemon, timeout=60)


def read_layer(host, precision, layer):
    dtype = PRECISIONS[precision][0]
    channels = 4 if layer["alpha"] else 3
    data = np.frombuffer((host / layer["file"]).read_bytes(), dtype=dtype)
    return data.reshape(layer["height"], layer["width"], channels)


def from_daemon(result, dtype):
    channels = len(result.format["channels"])
    return np.frombuffer(bytes(result.pixels), dtype=dtype).reshape(result.height, result.width, channels)


def assert_close(actual, expected, tolerance):
    assert actual.shape == expected.shape
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    assert difference.max() <= tolerance, f"max difference {difference.max()} > {tolerance}"


def outcome(gimp_run, name):
    cases, results, host, client = gimp_run
    result = results[name]
    assert result["status"] == "SUCCESS", f"{name}: {result['status']} {result.get('error')}"
    return cases[name], result, host, client


@pytest.mark.parametrize("name", ["stylize_u8", "stylize_u16", "stylize_f32"])
def test_stylize_whole_layer_matches_daemon(gimp_run, name):
    case, result, host, client = outcome(gimp_run, name)
    dtype, _, _, _, tolerance = PRECISIONS[case.precision]
    pixels = case.layers[0][0]
    args = case.spec["args"]
    expected = client.stylize(pixels.tobytes(), pixels.shape[1], pixels.shape[0],
                              wire_format(case.precision, pixels.shape[2] == 4), args["style"],
                              strength=args.get("strength", 1.0), preserve_colors=args.get("preserve-colors", False))
    got = read_layer(host, case.precision, result["image"]["layers"][0])
    assert_close(got, from_daemon(expected, dtype), tolerance)
    assert not np.array_equal(got, pixels), "the layer did not change"
    assert result["image"]["precision"] == case.precision


def test_stylize_accepts_a_display_name(gimp_run):
    case, result, host, client = outcome(gimp_run, "stylize_display_name")
    pixels = case.layers[0][0]
    expected = client.stylize(pixels.tobytes(), pixels.shape[1], pixels.shape[0], wire_format(case.precision, True),
                              "starry_night")
    assert_close(read_layer(host, case.precision, result["image"]["layers"][0]), from_daemon(expected, np.uint8), 1)


def test_stylize_u16_keeps_16_bit_detail(gimp_run):
    case, result, host, _ = outcome(gimp_run, "stylize_u16")
    got = read_layer(host, case.precision, result["image"]["layers"][0])
    assert np.count_nonzero(got % 257) > got.size // 2, "16-bit result looks like 8-bit values"


def test_stylize_grayscale_image(gimp_run):
    case, result, host, _ = outcome(gimp_run, "stylize_gray_u8")
    got = read_layer(host, case.precision, result["image"]["layers"][0])
    assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2]), "not grey"
    grey_in = case.layers[0][0][..., :3].astype(float).mean(axis=-1)
    assert np.abs(got[..., 0] - grey_in).mean() > 5, "the grey layer hardly changed"
    assert np.array_equal(got[..., 3], case.layers[0][0][..., 3]), "alpha changed"


@pytest.mark.parametrize("name", ["stylize_u8_sel", "stylize_half_sel"])
def test_stylize_selection_changes_only_the_selection(gimp_run, name):
    case, result, host, client = outcome(gimp_run, name)
    dtype, _, _, _, tolerance = PRECISIONS[case.precision]
    pixels = case.layers[0][0]
    x, y, w, h = case.selection
    crop = np.ascontiguousarray(pixels[y:y + h, x:x + w])
    expected = from_daemon(client.stylize(crop.tobytes(), w, h, wire_format(case.precision, True), "mosaic"), dtype)
    got = read_layer(host, case.precision, result["image"]["layers"][0])
    assert_close(got[y:y + h, x:x + w], expected, tolerance)
    outside = np.ones(pixels.shape[:2], bool)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(got[outside], pixels[outside])


def test_upscale_every_layer(gimp_run):
    case, result, host, client = outcome(gimp_run, "upscale_all_u8")
    image = result["image"]
    assert (image["width"], image["height"]) == (48, 40)
    assert len(image["layers"]) == 2
    assert not image["selection_empty"], "the user's selection was not restored"
    for layer, (pixels, offset) in zip(image["layers"], case.layers):
        h, w, channels = pixels.shape
        expected = from_daemon(client.upscale(pixels.tobytes(), w, h, wire_format(case.precision, channels == 4),
                                              scale=2), np.uint8)
        assert layer["offsets"] == [2 * offset[0], 2 * offset[1]]
        assert layer["alpha"] == (channels == 4)
        assert_close(read_layer(host, case.precision, layer), expected, 1)


def test_upscale_active_layer_only(gimp_run):
    case, result, host, client = outcome(gimp_run, "upscale_active_u16")
    image = result["image"]
    assert (image["width"], image["height"]) == (80, 64)
    untouched, active = image["layers"]
    assert (untouched["width"], untouched["height"]) == (80, 64)  # scaled by GIMP, not the network
    pixels = case.layers[1][0]
    expected = from_daemon(client.upscale(pixels.tobytes(), 12, 10, wire_format(case.precision, True), scale=4),
                           np.uint16)
    got = read_layer(host, case.precision, active)
    assert active["offsets"] == [12, 8]
    assert_close(got, expected, 1)
    assert got[..., 3].min() < 0.5 * 65535, "alpha was lost"


def test_upscale_selection_into_new_image(gimp_run):
    case, result, host, client = outcome(gimp_run, "upscale_sel_image_u8")
    assert len(result["new_images"]) == 1
    new = result["new_images"][0]
    assert (new["width"], new["height"]) == (24, 20) and len(new["layers"]) == 1
    x, y, w, h = case.selection
    crop = np.ascontiguousarray(case.layers[0][0][y:y + h, x:x + w])
    expected = from_daemon(client.upscale(crop.tobytes(), w, h, wire_format(case.precision, True), scale=2), np.uint8)
    assert_close(read_layer(host, case.precision, new["layers"][0]), expected, 1)
    assert result["returned"] == [new["id"], new["layers"][0]["id"]], "PDB return values (image, layer)"
    assert np.array_equal(read_layer(host, case.precision, result["image"]["layers"][0]), case.layers[0][0])


def test_upscale_selection_into_new_layer(gimp_run):
    case, result, host, client = outcome(gimp_run, "upscale_sel_layer_f32")
    layers = result["image"]["layers"]
    assert len(layers) == 2 and result["new_images"] == []
    top = layers[0]
    x, y, w, h = case.selection
    assert (top["width"], top["height"], top["offsets"]) == (2 * w, 2 * h, [x, y])
    crop = np.ascontiguousarray(case.layers[0][0][y:y + h, x:x + w])
    expected = from_daemon(client.upscale(crop.tobytes(), w, h, wire_format(case.precision, True), scale=2),
                           np.float32)
    assert_close(read_layer(host, case.precision, top), expected, 1e-5)
    assert result["returned"] == [result["image"]["id"], top["id"]], "PDB return values (image, layer)"


def test_stylize_draft_runs_the_styles_lite_net(gimp_run):
    case, result, host, client = outcome(gimp_run, "stylize_draft")
    pixels = case.layers[0][0]
    height, width = pixels.shape[:2]
    fmt = wire_format(case.precision, True)
    got = read_layer(host, case.precision, result["image"]["layers"][0])
    assert_close(got, from_daemon(client.stylize(pixels.tobytes(), width, height, fmt, "udnie_lite"), np.uint8), 1)
    full = from_daemon(client.stylize(pixels.tobytes(), width, height, fmt, "udnie"), np.uint8)
    assert np.abs(got.astype(int) - full.astype(int)).mean() > 5, "the full net's result, not the lite net's"


@pytest.mark.parametrize("name, message", [("unknown_style", "no_such_style"),
                                           ("draft_without_lite", "make one with `brushwork train distill "
                                                                  "--teacher mosaic`"),
                                           ("daemon_down", "No brushwork daemon answers")])
def test_errors_leave_the_image_unchanged(gimp_run, name, message):
    cases, results, host, _ = gimp_run
    result, case = results[name], cases[name]
    assert result["status"] == "EXECUTION_ERROR", result
    assert message in result["error"]
    assert np.array_equal(read_layer(host, case.precision, result["image"]["layers"][0]), case.layers[0][0])


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_train_style_from_selection(gimp_run, gimp_training_daemon):
    """Train Style trains a tiny style from the selection (options from the settings file); the
    daemon serves it from then on; the image is unchanged."""
    case, result, host, _ = outcome(gimp_run, "train_style")
    pixels = case.layers[0][0]
    assert np.array_equal(read_layer(host, case.precision, result["image"]["layers"][0]), pixels)
    models = {m["name"]: m for m in Client(gimp_training_daemon).info()["models"]}
    model = models["gimp_test_style"]
    assert model["display_name"] == "GIMP Test Style" and model["kind"] == "style"
    assert model["recipe"]["iterations"] == 3 and model["architecture"]["channels"] == 8
    x, y, w, h = TRAIN_SELECTION
    style = np.asarray(Image.open(model["data"]["style_image"]))
    assert np.array_equal(style, pixels[y:y + h, x:x + w])   # exactly the selected pixels


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_train_style_with_lite_makes_the_style_and_its_lite_version(gimp_run, gimp_training_daemon):
    """Train Style with ``lite`` trains the style, then distils its lite version with the settings
    file's lite_options and the chosen recipe; the daemon serves both, the lite net marked with its teacher."""
    case, result, host, _ = outcome(gimp_run, "train_style_lite")
    assert np.array_equal(read_layer(host, case.precision, result["image"]["layers"][0]), case.layers[0][0])
    models = {m["name"]: m for m in Client(gimp_training_daemon).info()["models"]}
    assert models["gimp_drafted"]["recipe"]["iterations"] == 2
    lite = models["gimp_drafted_lite"]
    assert lite["teacher"] == "gimp_drafted" and lite["recipe"]["teacher"] == "gimp_drafted"
    assert lite["architecture"]["channels"] == 4    # lite_options' iterations are the quick recipe's only
    assert lite["recipe"]["command"].endswith("# part step1, 1 of 7") and lite["recipe"]["stopped_by_time_limit"]
    assert models["gimp_drafted"]["lite"] == "gimp_drafted_lite"


@pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"training needs the VGG-16 weights at {VGG_WEIGHTS}")
def test_train_style_on_own_photos_stopped_early_keeps_a_partly_trained_style(gimp_run, gimp_local_daemon):
    """With a daemon started without --content, Train Style trains on the chosen photos folder;
    the time limit ends it early and the style is kept, marked as partly trained."""
    case, result, host, _ = outcome(gimp_run, "train_own_photos")
    assert np.array_equal(read_layer(host, case.precision, result["image"]["layers"][0]), case.layers[0][0])
    endpoint, photos = gimp_local_daemon
    model = {m["name"]: m for m in Client(endpoint).info()["models"]}["gimp_own_photos"]
    assert model["data"]["content"] == str(Path(photos).resolve()) and model["data"]["content_images"] == 3
    assert model["partly_trained"] is True and model["recipe"]["stopped_by_time_limit"] is True
    assert model["planned_iterations"] == 100_000 and 1 <= model["iterations"] < 100_000


def test_train_style_without_content_is_a_clear_error(gimp_run):
    cases, results, host, client = gimp_run
    result, case = results["train_refused"], cases["train_refused"]
    assert result["status"] == "EXECUTION_ERROR", result
    assert result["error"].startswith("brushwork: ") and "--content" in result["error"], result
    assert np.array_equal(read_layer(host, case.precision, result["image"]["layers"][0]), case.layers[0][0])
    assert "refused_style" not in [m["name"] for m in client.info()["models"]]


def test_settings_procedure_keeps_train_options(gimp_run, gimp_version):
    """daemon_down ran the Settings procedure after train_own_photos' settings file: train_options and
    lite_options stay."""
    _, _, host, _ = gimp_run
    stored = json.loads((host / "home" / ".config" / "GIMP" / gimp_version / "brushwork.json").read_text())
    assert stored["endpoint"] == DEAD_ENDPOINT and stored["train_options"] == TINY_TRAINING
    assert stored["lite_options"] == TINY_LITE
