"""The plug-in in each real Krita when its daemon is down, when it starts one on demand (stopped
with Krita), and when the daemon it started is killed mid-job (see ``conftest.py`` for the Kritas)."""

import sys
import time
from pathlib import Path

import pytest

from backend import protocol
from backend.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from krita_actions import BRUSHWORK, image_bytes, layer_pixels, photo_params, run_in_krita  # noqa: E402
from krita_actions import run_steps_in_krita  # noqa: E402

pytestmark = pytest.mark.krita


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
