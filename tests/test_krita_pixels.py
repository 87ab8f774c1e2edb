"""The Krita plug-in's Krita-free parts: pixel formats, regions, masks, settings, the daemon
connection's policy, installer.

Byte layouts are the ones Krita 5.1.5's Node.pixelData produces (checked in Krita): BGRA for
8/16-bit integer layers, RGBA for half/float layers, little-endian.
"""

import json
import struct
import subprocess
import sys
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from backend import pixels as backend_pixels
from plugin_krita import installer
from installed_plugins import krita_module


@pytest.fixture(scope="module")
def pixels():
    """The plug-in's pixels module as installed, with the vendored client it checks results with."""
    return krita_module("pixels")


settings = krita_module("settings")   # it imports the vendored protocol

# One pure-red, fully opaque pixel then one half-transparent pure-blue pixel, as Krita stores them.
KRITA_BYTES = {
    "U8": bytes([0, 0, 255, 255, 255, 0, 0, 128]),
    "U16": struct.pack("<8H", 0, 0, 65535, 65535, 65535, 0, 0, 32768),
    "F16": struct.pack("<8e", 1, 0, 0, 1, 0, 0, 1, 0.5),
    "F32": struct.pack("<8f", 1, 0, 0, 1, 0, 0, 1, 0.5),
}


@pytest.mark.parametrize("depth", sorted(KRITA_BYTES))
def test_krita_layouts_decode_to_red_then_blue(depth, pixels):
    fmt = pixels.pixel_format("RGBA", depth, "sRGB-elle-V2-srgbtrc.icc")
    assert 2 * pixels.bytes_per_pixel(fmt) == len(KRITA_BYTES[depth])
    rgb, alpha = backend_pixels.decode(KRITA_BYTES[depth], 2, 1, fmt)
    np.testing.assert_allclose(rgb[0], [[1, 0, 0], [0, 0, 1]], atol=1e-3)
    np.testing.assert_allclose(alpha[0], [1, 0.5], atol=3e-3)


@pytest.mark.parametrize("profile, transfer", [
    ("sRGB-elle-V2-srgbtrc.icc", "srgb"), ("sRGB built-in", "srgb"), ("ClayRGB-elle-V2-g22.icc", "srgb"),
    ("sRGB-elle-V2-g10.icc", "linear"), ("Rec2020-elle-V4-g10.icc", "linear"),
    ("krita-2.5, lcms sRGB built-in with linear gamma TRC", "linear"), ("scRGB (linear)", "linear")])
def test_transfer_from_krita_profile_names(profile, transfer, pixels):
    assert pixels.transfer_from_profile(profile) == transfer


def test_hdr_profiles_are_refused(pixels):
    with pytest.raises(pixels.UnsupportedImage, match="HDR"):
        pixels.transfer_from_profile("High Dynamic Range UHDTV Wide Color Gamut Display (Rec. 2020) - "
                                     "SMPTE ST 2084 PQ EOTF")


@pytest.mark.parametrize("model, name", [("CMYKA", "CMYK"), ("GRAYA", "Grayscale"), ("LABA", "L\\*a\\*b\\*")])
def test_other_colour_models_are_refused_with_a_hint(model, name, pixels):
    with pytest.raises(pixels.UnsupportedImage, match=f"this one is {name}.*Convert Image Color Space"):
        pixels.pixel_format(model, "U8", "")


def test_unknown_depth_is_refused(pixels):
    with pytest.raises(pixels.UnsupportedImage, match="colour depth 'U32'"):
        pixels.pixel_format("RGBA", "U32", "")


def test_region_is_layer_bounds_within_canvas_and_selection(pixels):
    Rect = pixels.Rect
    canvas = Rect(0, 0, 100, 80)
    assert pixels.request_region(Rect(-10, -5, 50, 40), canvas) == Rect(0, 0, 40, 35)
    assert pixels.request_region(Rect(0, 0, 100, 80), canvas, Rect(90, 70, 30, 30)) == Rect(90, 70, 10, 10)
    with pytest.raises(pixels.UnsupportedImage, match="does not overlap"):
        pixels.request_region(Rect(0, 0, 10, 10), canvas, Rect(50, 50, 5, 5))
    with pytest.raises(pixels.UnsupportedImage, match="empty"):
        pixels.request_region(Rect(0, 0, 0, 0), canvas)


def test_rect_scaled_and_intersections(pixels):
    Rect = pixels.Rect
    assert Rect(3, 4, 5, 6).scaled(4) == Rect(12, 16, 20, 24)
    assert Rect(0, 0, 4, 4).intersect(Rect(4, 0, 4, 4)).is_empty


def test_selection_mask_keeps_soft_edges_and_drops_full_masks(pixels):
    region = pixels.Rect(0, 0, 3, 2)
    soft = bytes([0, 128, 255, 255, 255, 255])
    assert pixels.selection_mask(soft, region) == soft
    assert pixels.selection_mask(b"\xff" * 6, region) is None
    with pytest.raises(pixels.UnsupportedImage, match="nothing is selected"):
        pixels.selection_mask(b"\x00" * 6, region)
    with pytest.raises(ValueError, match="5 bytes; expected 6"):
        pixels.selection_mask(b"\xff" * 5, region)


@pytest.mark.parametrize("dtype", ["u8", "u16", "f16", "f32"])
def test_mask_becomes_the_alpha_of_a_result(dtype, pixels):
    """alpha = selection x the pixel's own alpha; colours untouched."""
    kind = {"u8": np.uint8, "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}[dtype]
    peak = 1.0 if dtype.startswith("f") else np.iinfo(kind).max
    image = np.array([[10, 20, 30, peak], [40, 50, 60, peak], [70, 80, 90, 0.5 * peak], [1, 2, 3, peak]], kind)
    mask = bytes([255, 128, 255, 0])
    out = np.frombuffer(pixels.mask_as_alpha(image.tobytes(), {"dtype": dtype}, mask), kind).reshape(4, 4)
    assert np.array_equal(out[:, :3], image[:, :3])
    expected = np.array([1.0, 128 / 255, 0.5, 0.0]) * peak
    assert np.abs(out[:, 3].astype(np.float64) - expected).max() <= (1 if dtype in ("u8", "u16") else 1e-3 * peak)
    with pytest.raises(ValueError, match="3-pixel mask"):
        pixels.mask_as_alpha(image.tobytes(), {"dtype": dtype}, mask[:3])


def test_settings_round_trip_and_tolerate_bad_files(tmp_path):
    path = tmp_path / "brushwork" / "settings.json"
    assert settings.load(path) == settings.Settings()
    chosen = settings.Settings(style="mosaic", strength=0.5, output="replace", daemon_args=["--models", "x"])
    settings.save(chosen, path)
    assert settings.load(path) == chosen
    path.write_text(json.dumps({"strength": 7, "output": "sideways", "style": 3, "unknown": 1}))
    loaded = settings.load(path)
    assert (loaded.strength, loaded.output, loaded.style) == (1.0, "new_layer", "")
    path.write_text("{not json")
    assert settings.load(path) == settings.Settings()


def test_connection_starts_the_managed_daemon_only_when_allowed(tmp_path):
    Connection, Settings = krita_module("connection").Connection, krita_module("settings").Settings
    Unavailable = krita_module("brushwork_client.protocol").Unavailable
    failing = tmp_path / "brushwork"
    failing.write_text("#!/bin/sh\necho cannot start >&2\nexit 3\n")
    failing.chmod(0o755)
    unmanaged = Settings(endpoint=f"ipc://{tmp_path}/nobody.sock", manage_daemon=False, timeout_s=1.0)
    log = tmp_path / "daemon.log"
    statuses = []
    for settings, start, message in [
            (unmanaged, True, "no brushwork daemon answering"),
            (replace(unmanaged, manage_daemon=True, brushwork_executable=str(failing)), False,
             "no brushwork daemon answering"),
            (replace(unmanaged, manage_daemon=True, brushwork_executable=str(tmp_path / "missing")), True,
             "is not an executable file: fix it in the brushwork docker's settings"),
            (replace(unmanaged, manage_daemon=True, brushwork_executable=str(failing)), True,
             f"the brushwork daemon this plug-in started exited with code 3; see {log}")]:
        with pytest.raises(Unavailable, match=message):
            Connection(settings, None, str(log)).client(statuses.append, start=start)
    assert statuses == ["starting the brushwork daemon…"]
    assert "cannot start" in log.read_text()


def test_kritarc_key_is_set_and_removed_preserving_the_rest():
    original = "[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[Zeta]\nbar=2\n"
    enabled = installer.set_ini_key(original, "python", "enable_brushwork", "true")
    assert "[python]\nenable_other=true\nenable_brushwork=true\n" in enabled
    assert enabled.startswith("[General]\nfoo=1\n") and enabled.endswith("[Zeta]\nbar=2\n")
    assert installer.set_ini_key(enabled, "python", "enable_brushwork", "true") == enabled
    assert installer.set_ini_key(enabled, "python", "enable_brushwork", None) == original
    assert installer.set_ini_key("", "python", "enable_brushwork", "true") == "[python]\nenable_brushwork=true\n"


def test_install_upgrade_and_uninstall(tmp_path):
    kritarc = tmp_path / ".config" / "kritarc"
    kritarc.parent.mkdir(parents=True)
    kritarc.write_text("[General]\nkeep=me\n")
    plugin = tmp_path / ".local" / "share" / "krita" / "pykrita" / "brushwork"
    installer.install(home=tmp_path, vendor_zmq="never")
    (plugin / "stale_from_old_version.py").write_text("")
    installer.install(home=tmp_path, vendor_zmq="never")        # re-running upgrades cleanly
    assert not (plugin / "stale_from_old_version.py").exists()
    assert (plugin.parent / "brushwork.desktop").read_text().count("X-KDE-Library=brushwork") == 1
    for name in ("__init__.py", "krita_host.py", *(f"brushwork_client/{name}" for name in installer.CLIENT_FILES)):
        assert (plugin / name).is_file()
    assert json.loads((plugin / "install.json").read_text())["version"]
    assert "keep=me" in kritarc.read_text() and "enable_brushwork=true" in kritarc.read_text()
    installer.install(uninstall=True, home=tmp_path)
    assert not plugin.exists() and not (plugin.parent / "brushwork.desktop").exists()
    assert "enable_brushwork" not in kritarc.read_text() and "keep=me" in kritarc.read_text()


def test_package_zip_has_the_layout_krita_imports(tmp_path):
    archive = installer.package(tmp_path / "brushwork-krita.zip")
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
    assert {"brushwork.desktop", "brushwork/__init__.py", "brushwork/brushwork_client/client.py"} <= names
    assert not any("__pycache__" in name or name.startswith("brushwork/vendor") for name in names)


def test_vendored_client_runs_without_the_backend_package(tmp_path):
    """The vendored client must import with only pyzmq + stdlib (as in Krita's Python)."""
    installer.stage(tmp_path / "brushwork", recorded_executable=None)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from brushwork.brushwork_client.client import Client; "
            "from brushwork.brushwork_client.managed_daemon import ManagedDaemon; "
            "from brushwork import connection, pixels; "
            "from brushwork.brushwork_client import protocol; "
            "assert 'backend' not in sys.modules and 'numpy' not in sys.modules and 'torch' not in sys.modules; "
            "print(Client('ipc:///nonexistent').endpoint)")
    done = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ipc:///nonexistent"
