"""The GIMP plug-in's pure-Python parts, without GIMP: formats, rectangles, settings, installer."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from backend import protocol
from installed_plugins import gimp_module
from plugin_gimp.brushwork import model_list
from plugin_gimp.installer import install, plugin_dirs

settings = gimp_module("settings")   # these import the vendored protocol
gimp_pixels = gimp_module("gimp_pixels")

COMPONENTS = ["U8", "U16", "U32", "HALF", "FLOAT", "DOUBLE"]
TRANSFERS = ["LINEAR", "NON_LINEAR", "PERCEPTUAL"]


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("transfer", TRANSFERS)
@pytest.mark.parametrize("alpha", [True, False])
def test_every_gimp_precision_maps_to_a_valid_wire_format(component, transfer, alpha):
    babl, fmt = gimp_pixels.pixel_format(f"{component}_{transfer}", alpha)
    assert protocol.validate_format(fmt) == fmt
    assert fmt["channels"] == ("RGBA" if alpha else "RGB")
    assert fmt["transfer"] == ("linear" if transfer == "LINEAR" else "srgb")
    components, babl_type = babl.split(" ")
    assert ("'" in components) == (transfer != "LINEAR")
    assert components.replace("'", "") == fmt["channels"]
    # the babl type read from GEGL holds exactly what the wire dtype carries
    assert {"u8": "u8", "u16": "u16", "f16": "half", "f32": "float"}[fmt["dtype"]] == babl_type


@pytest.mark.parametrize("precision, babl, dtype", [
    ("U8_NON_LINEAR", "R'G'B'A u8", "u8"),
    ("U16_LINEAR", "RGBA u16", "u16"),
    ("U32_PERCEPTUAL", "R'G'B'A float", "f32"),   # no 32-bit integers on the wire: sent as f32
    ("HALF_LINEAR", "RGBA half", "f16"),
    ("DOUBLE_NON_LINEAR", "R'G'B'A float", "f32"),
    ("u16-non-linear", "R'G'B'A u16", "u16"),      # the enum nick works too
])
def test_precision_keeps_its_bit_depth(precision, babl, dtype):
    got_babl, fmt = gimp_pixels.pixel_format(precision, True)
    assert (got_babl, fmt["dtype"]) == (babl, dtype)


@pytest.mark.parametrize("bad", ["U12_LINEAR", "U8", "FLOAT_LOG", ""])
def test_unknown_precision_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unsupported GIMP precision"):
        gimp_pixels.pixel_format(bad, True)


@pytest.mark.parametrize("value, scale", [("2", 2), ("x4", 4), (8, 8), (" 4 ", 4)])
def test_parse_scale(value, scale):
    assert gimp_pixels.parse_scale(value) == scale


@pytest.mark.parametrize("value", ["3", "16", "", "four", None, 1])
def test_parse_scale_rejects_other_factors(value):
    with pytest.raises(ValueError, match="2, 4, 8"):
        gimp_pixels.parse_scale(value)


def test_selection_rect():
    assert gimp_pixels.selection_rect((True, 3, 4, 10, 6)) == (3, 4, 10, 6)
    assert gimp_pixels.selection_rect((False, 0, 0, 0, 0)) is None
    assert gimp_pixels.selection_rect((True, 5, 5, 0, 3)) is None


def test_settings_round_trip_and_defaults(tmp_path):
    assert settings.load(tmp_path) == settings.DEFAULTS
    stored = {"endpoint": "tcp://127.0.0.1:6000", "manage_daemon": False, "daemon_path": "/usr/bin/brushwork",
              "timeout_s": 12, "server_key": "/keys/server.key", "client_key": "/keys/laptop.key_secret"}
    path = settings.save(tmp_path, dict(stored, junk=1))
    assert os.path.basename(path) == "brushwork.json"
    assert settings.load(tmp_path) == dict(stored, timeout_s=12.0)


def test_train_and_lite_options_round_trip_and_are_checked(tmp_path):
    assert settings.load_lite_options(tmp_path) == {} and settings.load_train_options(tmp_path) == {}
    settings.save(tmp_path, {}, {"size": 128}, {"pool": 64, "iterations": 500})
    assert settings.load_train_options(tmp_path) == {"size": 128}
    assert settings.load_lite_options(tmp_path) == {"pool": 64, "iterations": 500}
    (tmp_path / "brushwork.json").write_text('{"lite_options": {"style_size": 256}}')   # a training-only option
    with pytest.raises(ValueError, match="lite_options must map some of .*pool") as info:
        settings.load_lite_options(tmp_path)
    assert "brushwork.json" in str(info.value)


@pytest.mark.parametrize("content, message", [("{not json", "cannot read"), ("[1, 2]", "JSON object"),
                                              ('{"timeout_s": "soon"}', "timeout_s")])
def test_broken_settings_file_names_the_file(tmp_path, content, message):
    (tmp_path / "brushwork.json").write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        settings.load(tmp_path)
    assert "brushwork.json" in str(info.value)


def test_install_and_uninstall(tmp_path):
    (tmp_path / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    folder = install(home=tmp_path, python=[sys.executable])
    assert [folder] == [str(d) for d in plugin_dirs(tmp_path)]
    assert folder.endswith(os.path.join(".config", "GIMP", "3.0", "plug-ins", "brushwork"))
    main = os.path.join(folder, "brushwork.py")
    assert os.stat(main).st_mode & stat.S_IXUSR
    with open(main) as f:
        assert f.readline() == "#!/usr/bin/env python3\n"
    for name in ("client.py", "managed_daemon.py", "protocol.py", "gimp_pixels.py", "settings.py", "connection.py",
                 "gimp_host.py", "procedures.py", "dialogs.py", "model_list.py"):
        assert os.path.isfile(os.path.join(folder, name)), name
    assert not os.path.exists(os.path.join(folder, "vendor")), "pyzmq was importable; nothing to vendor"
    install(home=tmp_path, python=[sys.executable])  # reinstalling replaces the folder
    assert install(uninstall=True, home=tmp_path) == folder
    assert not os.path.exists(folder)


@pytest.mark.parametrize("existing, expected", [
    ([], ["3.0", "3.2"]),              # GIMP 3 never ran: whichever starts first finds it
    (["3.0"], ["3.0"]),                # GIMP 3.2 copies the 3.0 profile, plug-in included, on its first start
    (["3.2"], ["3.2"]),
    (["3.0", "3.2"], ["3.0", "3.2"]),
    (["2.10", "3.2", "3.10"], ["3.2", "3.10"]),
])
def test_install_goes_into_every_gimp3_profile(tmp_path, existing, expected):
    config = tmp_path / ".config" / "GIMP"
    for version in existing:
        (config / version).mkdir(parents=True)
    folders = install(home=tmp_path, python=[sys.executable]).splitlines()
    assert folders == [str(config / v / "plug-ins" / "brushwork") for v in expected]
    assert all(os.path.isfile(os.path.join(f, "brushwork.py")) for f in folders)
    assert not (config / "2.10" / "plug-ins").exists()
    assert install(uninstall=True, home=tmp_path).splitlines() == folders
    assert not any(os.path.exists(f) for f in folders)


def test_install_vendors_pyzmq_for_a_python_without_it(tmp_path):
    bare = [sys.executable, "-S"]  # no site-packages: this Python cannot import zmq
    folder = install(home=tmp_path, python=bare).splitlines()[0]
    probe = f"import sys; sys.path.append({os.path.join(folder, 'vendor')!r}); import zmq; print(zmq.__version__)"
    assert subprocess.run([*bare, "-c", probe], capture_output=True, text=True).returncode == 0


def test_install_explains_how_to_get_pyzmq(tmp_path):
    other_python = tmp_path / "python3"
    other_python.write_text("#!/bin/sh\necho 3.99\necho 'No module named zmq' >&2\nexit 1\n")
    other_python.chmod(0o755)
    with pytest.raises(RuntimeError, match="python3-zmq"):
        install(home=tmp_path, python=[str(other_python)])
    assert not any(os.path.exists(folder) for folder in plugin_dirs(tmp_path))


def test_installed_connection_explains_why_no_daemon_answers(tmp_path):
    folder = install(home=tmp_path, python=[sys.executable]).splitlines()[0]
    failing = tmp_path / "brushwork"
    failing.write_text("#!/bin/sh\necho cannot start >&2\nexit 3\n")
    failing.chmod(0o755)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {folder!r})
        import connection, protocol, socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            endpoint = "tcp://127.0.0.1:%d" % s.getsockname()[1]
        for manage, program in [(False, ""), (True, {str(tmp_path / "missing")!r}), (True, {str(failing)!r})]:
            config = {{"endpoint": endpoint, "manage_daemon": manage, "daemon_path": program, "timeout_s": 3600}}
            try:
                connection.connect(config, {str(tmp_path)!r})
            except protocol.Unavailable as e:
                print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stderr
    assert lines[0].startswith("No brushwork daemon answers at tcp://127.0.0.1:") and "brushwork serve" in lines[0]
    assert "is not an executable file" in lines[1]
    assert "the brushwork daemon this plug-in started exited with code 3; see " in lines[2]
    assert "cannot start" in (tmp_path / "brushwork-daemon.log").read_text()


def test_installed_connection_starts_the_recorded_daemon_and_watches_it(tmp_path):
    """With no daemon answering, the plug-in starts the ``brushwork`` the installer recorded, pulses
    while it comes up, and hands back a Client that watches it."""
    folder = install(home=tmp_path, python=[sys.executable]).splitlines()[0]
    with open(os.path.join(folder, "installed.json")) as f:
        if not json.load(f)["brushwork_executable"]:
            pytest.skip("no `brushwork` program in this environment to record")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {folder!r})
        import connection
        config = {{"endpoint": "ipc://{tmp_path}/managed.sock", "manage_daemon": True, "daemon_path": "",
                   "timeout_s": 60}}
        pulses = []
        client = connection.connect(config, {str(tmp_path / "gimp")!r}, waiting=lambda: pulses.append(1))
        try:
            names = [model["name"] for model in client.info()["models"]]
            print(client.daemon.running, len(pulses) > 0, "composition_vii" in names)
        finally:
            client.daemon.stop()
        print(client.daemon.running)
    """)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg-data"))
    env.pop("BRUSHWORK_CONTENT", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.stdout.splitlines() == ["True True True", "False"], out.stderr   # a bundled model; then stopped
    assert (tmp_path / "gimp" / "brushwork-daemon.log").is_file()


def test_installer_records_the_brushwork_program(tmp_path):
    folder = install(home=tmp_path, python=[sys.executable]).splitlines()[0]
    with open(os.path.join(folder, "installed.json")) as f:
        recorded = json.load(f)["brushwork_executable"]
    beside_python = os.path.join(os.path.dirname(sys.executable), "brushwork")
    if os.path.exists(beside_python):  # the venv's console script, as `pip install -e .` makes it
        assert recorded == beside_python
    assert recorded == "" or os.access(recorded, os.X_OK)


MODELS = [{"name": "starry_night", "display_name": "Starry Night (van Gogh)", "kind": "style", "scale": 1},
          {"name": "sr_x4_feat", "display_name": "Upscale x4, sharp detail", "kind": "sr", "scale": 4}]


@pytest.mark.parametrize("text, kind, name", [
    ("starry_night", "style", "starry_night"),
    ("Starry Night (van Gogh)", "style", "starry_night"),
    ("  starry night (VAN GOGH) ", "style", "starry_night"),
    ("upscale x4, sharp detail", "sr", "sr_x4_feat"),
    ("Upscale x4, sharp detail", "style", "Upscale x4, sharp detail"),   # not a style: the daemon refuses it
    ("no such style", "style", "no such style"),
])
def test_model_names_resolve_display_names(text, kind, name):
    assert model_list.resolve(text, MODELS, kind) == name


def test_dialogs_remember_the_daemons_models(tmp_path):
    model_list.remember(tmp_path, [dict(MODELS[0], thumbnail="...")])
    assert model_list.last_known(tmp_path) == [MODELS[0]]
    assert model_list.choices(model_list.last_known(tmp_path), "style") == [("starry_night", "Starry Night (van Gogh)")]
    (tmp_path / model_list.CACHE_NAME).write_text("{broken")
    assert isinstance(model_list.last_known(tmp_path), list)
