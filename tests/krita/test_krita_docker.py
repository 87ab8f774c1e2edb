"""The Brushwork docker in each real Krita: the strength it shows is the one applied, it fits a small
screen, Cancel, and its state follows the document (see ``conftest.py`` for the Kritas)."""

import sys
from pathlib import Path

import pytest

from backend.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from krita_actions import U8_FORMAT, assert_close, layer_pixels, photo_params, run_steps_in_krita  # noqa: E402

pytestmark = pytest.mark.krita


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
