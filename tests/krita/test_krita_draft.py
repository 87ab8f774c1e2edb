"""The docker's Draft switch in each real Krita: a style with a lite net is one gallery entry, Draft
runs its lite net into a layer named as a draft; a style without one has the switch disabled, with
a tooltip saying how to make one (see ``conftest.py`` for the Kritas and the daemon)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from backend.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from krita_actions import U8_FORMAT, assert_close, layer_pixels, photo_params, run_steps_in_krita  # noqa: E402

pytestmark = pytest.mark.krita


def test_draft_switch_runs_the_styles_lite_net(krita_home, draft_daemon, tmp_path):
    width, height = 24, 20
    pixels, params = photo_params(tmp_path, width, height, seed=13, steps=[
        {"do": "show_docker"}, {"do": "wait_idle"}, {"do": "dump", "tag": "listed"},
        {"do": "click", "widget": "draft", "at": [0.03, 0.5]},   # on its box
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "drafted"},
        {"do": "choose_style", "name": "mosaic"}, {"do": "dump", "tag": "other"},
        {"do": "trigger", "action": "brushwork_stylize"}, {"do": "dump", "tag": "full"}])
    states = run_steps_in_krita(krita_home, tmp_path, params, endpoint=draft_daemon, manage_daemon=False,
                                style="udnie")
    listed, drafted, other, full = states["listed"], states["drafted"], states["other"], states["full"]

    # each style once: udnie's lite net is its Draft switch, not an entry of its own
    assert "udnie" in listed["gallery"] and "mosaic" in listed["gallery"] and "udnie_lite" not in listed["gallery"]
    assert listed["draft"] == {"checked": False, "enabled": True, "tooltip": listed["draft"]["tooltip"]}
    assert "udnie_lite" in listed["draft"]["tooltip"]

    assert drafted["error"] == "" and drafted["draft"]["checked"]
    assert [layer["name"] for layer in drafted["layers"]] == ["Photo", "Photo (Udnie (Picabia)) (draft)"]
    assert "its lite net udnie_lite" in drafted["status"]
    with Client(draft_daemon) as client:
        lite, teacher, other_full = (bytes(client.stylize(pixels, width, height, U8_FORMAT, name).pixels)
                                     for name in ("udnie_lite", "udnie", "mosaic"))
    layer = layer_pixels(drafted["layers"][1])
    assert_close(layer, bytes(lite), "u8")                                # the lite net's result ...
    difference = np.abs(np.frombuffer(layer, np.uint8).astype(int) - np.frombuffer(teacher, np.uint8).astype(int))
    assert difference.mean() > 5                                          # ... not the full net's

    # mosaic (a test model) has no lite net: the switch is disabled (still on), says how to make one,
    # and the full net runs
    assert other["draft"]["checked"] and not other["draft"]["enabled"]
    assert "`brushwork train distill --teacher mosaic`" in other["draft"]["tooltip"]
    assert full["error"] == ""
    names = [layer["name"] for layer in full["layers"]]
    assert names[1] == "Photo (Mosaic)" and "(draft)" not in names[1]
    assert "no draft" in full["status"] and "`brushwork train distill --teacher mosaic`" in full["status"]
    assert_close(layer_pixels(full["layers"][1]), bytes(other_full), "u8")
