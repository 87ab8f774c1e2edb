"""End-to-end: the installed plug-in in each real Krita GUI (Xvfb) against a real brushwork daemon.

Each test builds a small document, triggers one of the plug-in's own actions from a driver script,
and compares the layers Krita ends up with against what the daemon returns for the same pixels
when asked directly; it runs once per Krita (see ``conftest.py``). The docker: test_krita_docker.py;
training: test_krita_train.py; daemons down, started and killed: test_krita_daemon.py.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from backend.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from krita_actions import (U8_FORMAT, U16_LINEAR_FORMAT, assert_close, crop, image_bytes,  # noqa: E402
                           layer_pixels, run_in_krita, run_steps_in_krita)

pytestmark = pytest.mark.krita


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
