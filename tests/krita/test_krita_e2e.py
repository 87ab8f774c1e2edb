"""End-to-end: the installed plug-in in each real Krita GUI (Xvfb) against a real brushwork daemon.

Each test runs once per Krita of ``harness.KRITAS`` (5.1 on this machine; 5.2, 5.3 and 6.0 in
their Debian chroots), named in the test id (``[krita6.0-experimental-...]``): it builds a small
document, triggers one of the plug-in's own actions from a driver script, and compares the
layers Krita ends up with against what the daemon returns for the same pixels when asked
directly. A Krita that is not installed skips, or fails with ``BRUSHWORK_REQUIRE_EDITORS=1``.
Run with ``pytest -m krita tests/krita``.
"""

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import protocol
from backend.client import Client
from daemon_process import start_daemon, stop_daemon
from helpers import shared_dir, training_photos

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

pytestmark = pytest.mark.krita

SCRIPT = harness.HERE / "scripts" / "run_action.py"
BRUSHWORK = Path(sys.executable).parent / "brushwork"
U8_FORMAT = {"dtype": "u8", "channels": "BGRA", "transfer": "srgb"}
U16_LINEAR_FORMAT = {"dtype": "u16", "channels": "BGRA", "transfer": "linear"}
VGG_WEIGHTS = shared_dir() / "weights" / "vgg16_caffe_relu4_3.pth"   # where the daemon's trainer finds them


@pytest.fixture(scope="session", params=harness.KRITAS, ids=str)
def krita(request):
    """Each Krita in turn; one that cannot run here skips (fails when editors are required)."""
    problem = request.param.missing()
    if problem:
        if os.environ.get("BRUSHWORK_REQUIRE_EDITORS") == "1":
            pytest.fail(f"{request.param}: {problem}")
        pytest.skip(f"{request.param}: {problem}")
    return request.param


@pytest.fixture(scope="session")
def krita_home(krita, tmp_path_factory):
    """A template HOME for ``krita``: (krita, home)."""
    return krita, harness.build_template_home(krita, tmp_path_factory.mktemp(f"{krita}-template") / "home")


@pytest.fixture(scope="session")
def daemon(tmp_path_factory, models_dir):
    """A daemon without training content: it refuses train_style."""
    directory = tmp_path_factory.mktemp("daemon")
    endpoint = f"ipc://{directory}/daemon.sock"
    process = start_daemon(directory, endpoint, models_dir)
    yield endpoint
    stop_daemon(process)


@pytest.fixture(scope="session")
def training_daemon(tmp_path_factory, models_dir):
    """A daemon that trains on three shared photos (``brushwork serve --content``) into ``trained/``."""
    directory = tmp_path_factory.mktemp("training-daemon")
    content = training_photos(directory / "content")
    endpoint = f"ipc://{directory}/daemon.sock"
    process = start_daemon(directory, endpoint, models_dir, "--content", str(content),
                           "--train-out", str(directory / "trained"))
    yield endpoint
    stop_daemon(process)


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


@pytest.mark.parametrize("depth, profile, fmt", [("U8", "sRGB-elle-V2-srgbtrc.icc", U8_FORMAT),
                                                  ("U16", "sRGB-elle-V2-g10.icc", U16_LINEAR_FORMAT)])
@pytest.mark.parametrize("soft_selection", [False, True])
def test_stylize_active_layer(krita_home, daemon, tmp_path, depth, profile, fmt, soft_selection):
    """Stylize the active layer; with a selection whose left half is half-selected (soft edge)."""
    width, height = 40, 28
    region = [8, 4, 20, 16] if soft_selection else [0, 0, width, height]
    selection = [region + [255], [8, 4, 10, 16, 128]] if soft_selection else None
    pixels = image_bytes(height, width, fmt["dtype"], seed=1)
    (tmp_path / "layer.raw").write_bytes(pixels)
    params = {"width": width, "height": height, "depth": depth, "profile": profile, "action": "brushwork_stylize",
              "layers": [{"name": "Photo", "file": str(tmp_path / "layer.raw"), "rect": [0, 0, width, height]}],
              "selection": selection, "undo": 1}
    result, undone = run_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False,
                                  style="mosaic", strength=1.0)

    assert result["error"] == ""
    names = [layer["name"] for layer in result["layers"]]
    assert names == ["Photo", "Photo (Mosaic)"]
    assert result["active"] == "Photo"                  # the source stays selected for the next Stylize
    original, styled = result["layers"]
    assert layer_pixels(original) == pixels            # the source layer is untouched
    assert styled["bounds"] == region and styled["depth"] == depth
    bpp = 4 * (1 if fmt["dtype"] == "u8" else 2)
    source = crop(pixels, width, region, bpp)
    client = Client(daemon)
    styled_colours = bytes(client.stylize(source, region[2], region[3], fmt, "mosaic").pixels)
    assert styled_colours != source                    # the style really changed the pixels
    if not soft_selection:
        assert_close(layer_pixels(styled), styled_colours, fmt["dtype"])
    else:
        # the new layer is the styled colours with the selection as its alpha (transparent outside) ...
        kind = np.uint8 if fmt["dtype"] == "u8" else np.dtype("<u2")
        mask = np.array(([128] * 10 + [255] * 10) * 16, np.int64)
        layer = np.frombuffer(layer_pixels(styled), kind).reshape(-1, 4).astype(np.int64)
        colours = np.frombuffer(styled_colours, kind).reshape(-1, 4).astype(np.int64)
        peak = np.iinfo(kind).max
        assert np.abs(layer[:, 3] - (peak * mask + 127) // 255).max() <= 1
        tolerance = 1 if fmt["dtype"] == "u8" else 257
        assert np.abs(layer[:, :3] - colours[:, :3]).max() <= tolerance
        # ... over the opaque source it composites to styled x alpha + source x (1 - alpha) ...
        projection = crop(Path(result["projection"]).read_bytes(), width, region, bpp)
        weight = layer[:, 3:4] / peak
        under = np.frombuffer(source, kind).reshape(-1, 4).astype(np.int64)
        composite = np.round(layer[:, :3] * weight + under[:, :3] * (1 - weight))
        shown = np.frombuffer(projection, kind).reshape(-1, 4).astype(np.int64)
        assert np.abs(shown[:, :3] - composite).max() <= 2 * tolerance
        if fmt["transfer"] == "srgb":
            # ... which in an sRGB image is the daemon's own blend through the mask, the result before
            blended = client.stylize(source, region[2], region[3], fmt, "mosaic", mask=bytes(mask.tolist())).pixels
            assert_close(projection, bytes(blended), fmt["dtype"], tolerance_u8=2)
    # one undo step removes the new layer
    assert [layer["name"] for layer in undone["layers"]] == ["Photo"]


def test_upscale_opens_a_new_image_and_leaves_the_original_untouched(krita_home, daemon, tmp_path):
    """Upscale x4 of a saved two-layer image: the upscaled image opens as a new, unsaved document
    (each layer's name, opacity, blending and visibility kept, the paint layers through the
    network) whose undo history is empty; the original keeps its size, pixels and file, and no
    undo step is added to it (it stays unmodified)."""
    width, height = 24, 16
    bottom = image_bytes(height, width, "u8", seed=2)
    top_rect = [4, 4, 12, 8]
    alpha = np.linspace(0.2, 1.0, top_rect[2] * top_rect[3], dtype=np.float32).reshape(top_rect[3], top_rect[2])
    top = image_bytes(top_rect[3], top_rect[2], "u8", seed=3, alpha=alpha)
    (tmp_path / "bottom.raw").write_bytes(bottom)
    (tmp_path / "top.raw").write_bytes(top)
    saved = tmp_path / "painting.kra"
    params = {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
              "active": 1, "save_as": str(saved),
              "layers": [{"name": "Bottom", "file": str(tmp_path / "bottom.raw"), "rect": [0, 0, width, height]},
                         {"name": "Top", "file": str(tmp_path / "top.raw"), "rect": top_rect, "opacity": 200,
                          "blending": "multiply", "visible": False}],
              "steps": [{"do": "trigger", "action": "brushwork_upscale"},
                        {"do": "dump", "tag": "original"}, {"do": "dump", "tag": "result", "document": "active"},
                        {"do": "undo", "times": 1}, {"do": "dump", "tag": "undone", "document": "active"}]}
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False,
                                upscale_factor=4, upscale_layers="all")
    original, result, undone = states["original"], states["result"], states["undone"]

    assert result["error"] == ""
    assert result["is_active_document"] and result["documents"] == 2     # the original and the new image
    assert (result["width"], result["height"]) == (width * 4, height * 4)
    assert result["name"] == "test x4" and result["file_name"] == "" and result["modified"]
    assert f"into the new image 'test x4', {width * 4}x{height * 4} px; 'test' is unchanged" in result["status"]
    assert [(layer["name"], layer["type"], layer["opacity"], layer["blending"], layer["visible"])
            for layer in result["layers"]] == [("Bottom", "paintlayer", 255, "normal", True),
                                               ("Top", "paintlayer", 200, "multiply", False)]
    assert result["active"] == "Top"
    client = Client(daemon)
    for layer, data, rect in ((result["layers"][0], bottom, [0, 0, width, height]),
                              (result["layers"][1], top, top_rect)):
        expected = client.upscale(data, rect[2], rect[3], U8_FORMAT, scale=4).pixels
        assert layer["bounds"] == [v * 4 for v in rect]
        assert_close(layer_pixels(layer), bytes(expected), "u8")
    alpha_out = np.frombuffer(layer_pixels(result["layers"][1]), np.uint8)[3::4]
    assert alpha_out.min() < 128 < alpha_out.max()     # the top layer's soft alpha survived
    # the original: same size, pixels and file, and unmodified (no undo step was added to it)
    assert (original["width"], original["height"]) == (width, height)
    assert [layer_pixels(layer) for layer in original["layers"]] == [bottom, top]
    assert original["file_name"] == str(saved) and not original["modified"]
    # the new image's history is empty: Undo there changes nothing
    assert (undone["width"], undone["height"]) == (width * 4, height * 4)
    assert [layer_pixels(layer) for layer in undone["layers"]] == [layer_pixels(layer) for layer in result["layers"]]


def test_daemon_down_leaves_document_unchanged(krita_home, tmp_path):
    width, height = 16, 16
    pixels = image_bytes(height, width, "u8", seed=4)
    (tmp_path / "layer.raw").write_bytes(pixels)
    params = {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
              "action": "brushwork_stylize",
              "layers": [{"name": "Photo", "file": str(tmp_path / "layer.raw"), "rect": [0, 0, width, height]}]}
    result, _ = run_in_krita(krita_home, tmp_path, params, endpoint=f"ipc://{tmp_path}/nobody.sock",
                             manage_daemon=False, style="mosaic", timeout_s=2.0)

    assert "no brushwork daemon answering" in result["error"]
    assert result["status"] == result["error"]          # shown in the docker
    assert [layer["name"] for layer in result["layers"]] == ["Photo"]
    assert layer_pixels(result["layers"][0]) == pixels


def test_managed_daemon_started_on_demand_and_stopped_with_krita(krita_home, models_dir, tmp_path):
    krita, _ = krita_home
    if not krita.runs_host_python():
        pytest.skip(f"{BRUSHWORK} runs on this machine's system Python ({sys.executable}), which {krita.root} "
                    "does not have: make the environment with a Python outside /usr (e.g. pyenv) to test this case")
    width, height = 16, 12
    pixels = image_bytes(height, width, "u8", seed=5)
    (tmp_path / "layer.raw").write_bytes(pixels)
    endpoint = f"ipc://{tmp_path}/managed.sock"
    params = {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
              "action": "brushwork_stylize",
              "layers": [{"name": "Photo", "file": str(tmp_path / "layer.raw"), "rect": [0, 0, width, height]}]}
    result, _ = run_in_krita(krita_home, tmp_path, params, endpoint=endpoint, manage_daemon=True,
                             brushwork_executable=str(BRUSHWORK), style="starry_night",
                             daemon_args=["--models", str(models_dir), "--device", "cpu"])

    assert result["error"] == ""
    assert [layer["name"] for layer in result["layers"]] == ["Photo", "Photo (Starry Night)"]
    time.sleep(1.0)
    with pytest.raises(protocol.Unavailable):       # Krita quit, so its daemon is gone
        Client(endpoint, timeout=1.0).ping()


SELECTED = [8, 6, 24, 20]   # x, y, w, h: the style image sent to the daemon


def train_in_krita(krita_home, tmp_path, endpoint, dialog, **settings):
    """Select a rectangle of a 48x40 painting, press the plug-in's Train action against ``endpoint``
    and fill in its dialog with ``dialog`` (name, iterations, optional content and stop_after: the
    driver's "train_dialog" step); the state dumped once the training ended."""
    width, height = 48, 40
    pixels = image_bytes(height, width, "u8", seed=6)
    (tmp_path / "layer.raw").write_bytes(pixels)
    params = {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
              "selection": [SELECTED + [255]],
              "layers": [{"name": "Painting", "file": str(tmp_path / "layer.raw"), "rect": [0, 0, width, height]}],
              "steps": [{"do": "train_dialog", **dialog}, {"do": "dump", "tag": "result"}]}
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


def test_stylize_replace_mode_takes_two_undo_steps(krita_home, daemon, tmp_path):
    width, height = 20, 20
    pixels = image_bytes(height, width, "u8", seed=7)
    (tmp_path / "layer.raw").write_bytes(pixels)
    params = {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
              "action": "brushwork_stylize", "undo": 2,
              "layers": [{"name": "Photo", "file": str(tmp_path / "layer.raw"), "rect": [0, 0, width, height]}]}
    result, undone = run_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False,
                                  style="mosaic", output="replace")

    assert result["error"] == ""
    assert [layer["name"] for layer in result["layers"]] == ["Photo"]
    expected = Client(daemon).stylize(pixels, width, height, U8_FORMAT, "mosaic").pixels
    assert_close(layer_pixels(result["layers"][0]), bytes(expected), "u8")
    assert [layer["name"] for layer in undone["layers"]] == ["Photo"]
    assert layer_pixels(undone["layers"][0]) == pixels


def photo_params(tmp_path, width, height, seed, **extra):
    """PARAMS for a one-layer 8-bit sRGB document named "Photo" holding a smooth random image."""
    pixels = image_bytes(height, width, "u8", seed=seed)
    (tmp_path / "layer.raw").write_bytes(pixels)
    return pixels, {"width": width, "height": height, "depth": "U8", "profile": "sRGB-elle-V2-srgbtrc.icc",
                    "layers": [{"name": "Photo", "file": str(tmp_path / "layer.raw"),
                                "rect": [0, 0, width, height]}], **extra}


def shown_percent(state):
    return int(state["strength_shown"].rstrip(" %"))


def test_strength_applied_is_the_strength_shown(krita_home, daemon, tmp_path):
    """A click on the slider's track, the mouse wheel and the arrow keys change what Stylize sends."""
    width, height = 24, 20
    pixels, params = photo_params(tmp_path, width, height, seed=8, steps=[
        {"do": "show_docker"},
        {"do": "click", "widget": "strength", "at": [0.95, 0.5]},     # on the track, right of the handle
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "clicked"},
        {"do": "wheel", "widget": "strength", "notches": -1},
        {"do": "key", "widget": "strength", "key": "Key_Left"},
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "keys"}])
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False,
                                style="mosaic", strength=0.5)

    clicked, keys = states["clicked"], states["keys"]
    assert shown_percent(clicked) > 50 and shown_percent(keys) < shown_percent(clicked)
    client = Client(daemon)
    # each new layer goes right above the source: [Photo, second result, first result]
    for state, layer in ((clicked, clicked["layers"][1]), (keys, keys["layers"][1])):
        assert state["error"] == ""
        strength = shown_percent(state) / 100
        expected = client.stylize(pixels, width, height, U8_FORMAT, "mosaic", strength=strength).pixels
        assert_close(layer_pixels(layer), bytes(expected), "u8")


def test_docker_fits_a_small_screen_and_its_buttons_stay_put(krita_home, daemon, tmp_path):
    """Gallery, options, buttons, progress and status fit in 350 px; a long message moves no button."""
    _, params = photo_params(tmp_path, 16, 16, seed=9, steps=[
        {"do": "show_docker"}, {"do": "dump", "tag": "quiet"},
        {"do": "trigger", "action": "brushwork_train_style"}, {"do": "dump", "tag": "message"}])
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False, style="mosaic")

    quiet, message = states["quiet"], states["message"]
    print(f"docker minimum height: panel {quiet['panel_minimum_height']} px, "
          f"with its title bar {quiet['docker_minimum_height']} px")
    assert quiet["panel_minimum_height"] <= 350
    assert quiet["status"] == "" and "select the part of the image" in message["status"]
    assert message["stylize_button_y"] == quiet["stylize_button_y"]


def test_dead_managed_daemon_is_reported_at_once_and_cleared_by_the_next_success(krita_home, models_dir, tmp_path):
    """SIGKILL the daemon the plug-in started, mid-job: the docker says so at once (not after the
    60-s timeout); the next Stylize starts a new daemon, and its success clears the error."""
    krita, _ = krita_home
    if not krita.runs_host_python():
        pytest.skip(f"{BRUSHWORK} runs on this machine's system Python ({sys.executable}), which {krita.root} "
                    "does not have")
    width, height = 640, 640
    _, params = photo_params(tmp_path, width, height, seed=10, steps=[
        {"do": "start", "action": "brushwork_stylize", "tiles_done": 1},
        {"do": "kill_daemon"}, {"do": "dump", "tag": "dead"},
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "again"}])
    endpoint = f"ipc://{tmp_path}/managed.sock"
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=endpoint, manage_daemon=True,
                                brushwork_executable=str(BRUSHWORK), style="mosaic", timeout_s=60.0,
                                daemon_args=["--models", str(models_dir), "--device", "cpu", "--tile-size", "128"])

    dead, again = states["dead"], states["again"]
    print(f"managed daemon killed -> docker reported it after "
          f"{dead['events']['reported'] - dead['events']['killed']:.2f} s")
    assert "the brushwork daemon this plug-in started was killed by signal 9" in dead["error"]
    assert dead["status"] == dead["error"] and dead["connection"].startswith("○")
    assert [layer["name"] for layer in dead["layers"]] == ["Photo"]         # the document is unchanged
    assert again["error"] == "" and again["status"].startswith("stylized")
    assert again["connection"].startswith("●")
    assert [layer["name"] for layer in again["layers"]] == ["Photo", "Photo (Mosaic)"]


def test_cancel_says_cancelling_and_stops_at_the_next_tile(krita_home, daemon, tmp_path):
    """Cancel disables itself and says "cancelling…" at once; tiles show as a percentage; the job
    stops after the tile it was on, the document unchanged, and the idle bar reads no percentage."""
    pixels, params = photo_params(tmp_path, 768, 768, seed=11, steps=[
        {"do": "show_docker"},
        {"do": "start", "action": "brushwork_stylize", "tiles_done": 1},
        {"do": "click", "widget": "cancel_button", "mark": "cancel_clicked"},
        {"do": "wait_idle"}, {"do": "dump", "tag": "cancelled"}])
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False, style="mosaic")

    cancelled = states["cancelled"]
    clicked = cancelled["events"]["cancel_clicked"]          # the docker right after the click
    assert clicked["status"] == "cancelling…" and clicked["cancel_enabled"] is False
    tiles = [p for p in cancelled["progress"] if p[1] > 0]
    assert tiles and all(text.endswith("%") for *_, text in tiles)       # e.g. "12%"
    worker = [p for p in cancelled["worker_progress"] if p[1] > 0]     # as the job's thread heard them
    done_at_click = max(done for done, total in cancelled["worker_progress"][:clicked["worker_progress"]] if total)
    total, done_at_stop = worker[0][1], max(done for done, _ in worker)
    # the daemon hears of the cancel within the client's 0.1-s poll and stops before its next tile;
    # small tiles take a few ms each, so a few more may be done by then
    print(f"cancel clicked at tile {done_at_click} of {total}; the daemon stopped after tile {done_at_stop}")
    assert done_at_stop < total
    assert cancelled["error"] == "cancelled: the image was not changed" == cancelled["status"]
    assert [layer_pixels(layer) for layer in cancelled["layers"]] == [pixels]
    assert cancelled["progress_text"] != "100%" and not cancelled["cancel_enabled"]


def test_docker_state_follows_the_document_and_names_do_not_nest(krita_home, daemon, tmp_path):
    """A success replaces an error; the source layer stays active; stylising a result layer names the
    new one after the source, not "Photo (Mosaic) (Mosaic)"; another document shows its own messages."""
    _, params = photo_params(tmp_path, 16, 16, seed=12, steps=[
        {"do": "trigger", "action": "brushwork_train_style"}, {"do": "dump", "tag": "error"},
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "first"},
        {"do": "activate", "index": 1},
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "restyled"},
        {"do": "new_document"}, {"do": "dump", "tag": "other"},
        {"do": "show_document", "index": 0}, {"do": "dump", "tag": "back"}])
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=daemon, manage_daemon=False, style="mosaic")

    assert "select the part of the image" in states["error"]["error"]
    first = states["first"]
    assert first["error"] == "" and first["status"].startswith("stylized")
    assert first["active"] == "Photo" and first["progress_text"] != "100%"
    restyled = states["restyled"]
    assert [layer["name"] for layer in restyled["layers"]] == ["Photo", "Photo (Mosaic)", "Photo (Mosaic)"]
    assert states["other"]["status"] == ""
    assert states["back"]["status"] == restyled["status"]
