"""The `brushwork` command: files in and out, via a running daemon and in-process, and its errors."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from backend import cli, model_store, protocol
from backend.cli.images import progress_text
from backend.image_io import read_image, write_image
from daemon_process import ENGINE_ARGS, REPO, daemon_env, start_daemon, stop_daemon
from helpers import make_model, random_image


@pytest.fixture(scope="module")
def daemon(models_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    endpoint = f"ipc://{tmp}/cli.sock"
    proc = start_daemon(tmp, endpoint, models_dir)
    yield endpoint
    stop_daemon(proc)


@pytest.fixture(autouse=True)
def private_user_dirs(tmp_path, monkeypatch):
    """No user models, and no daemon at the default endpoint."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("BRUSHWORK_ENDPOINT", f"ipc://{tmp_path}/no-daemon.sock")


@pytest.fixture
def images(tmp_path):
    """An 8-bit RGBA PNG with translucency and an RGB JPEG, in tmp_path/in."""
    directory = tmp_path / "in"
    directory.mkdir()
    rgba = np.dstack([random_image(30, 40, 1), np.linspace(0, 1, 30 * 40).reshape(30, 40)])
    write_image(directory / "a.png", (rgba * 255 + 0.5).astype(np.uint8))
    write_image(directory / "b.jpg", (random_image(24, 20, 2) * 255 + 0.5).astype(np.uint8))
    return directory


def local_args(models_dir):
    return ["--local", "--models", str(models_dir), *ENGINE_ARGS]


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_stylize_via_daemon_and_in_process_give_the_same_files(daemon, models_dir, images, tmp_path, capsys):
    common = ["stylize", str(images / "*.png"), str(images / "b.jpg"), "--style", "mosaic", "-q", "-v"]
    code, _, err = run([*common, "--out-dir", str(tmp_path / "d"), "--endpoint", daemon], capsys)
    assert code == 0 and "using the daemon at" in err
    code, _, err = run([*common, "--out-dir", str(tmp_path / "l"), *local_args(models_dir)], capsys)
    assert code == 0 and "in-process engine" in err
    for name in ("a-mosaic.png", "b-mosaic.jpg"):
        via_daemon, fmt = read_image(tmp_path / "d" / name)
        in_process, _ = read_image(tmp_path / "l" / name)
        np.testing.assert_array_equal(via_daemon, in_process)
    original, _ = read_image(images / "a.png")
    assert fmt["channels"] == "RGB" and original.shape == (30, 40, 4)
    stylized, fmt = read_image(tmp_path / "d" / "a-mosaic.png")
    assert fmt["channels"] == "RGBA" and np.array_equal(stylized[..., 3], original[..., 3])  # alpha kept
    assert np.abs(stylized[..., :3].astype(int) - original[..., :3]).mean() > 5


def test_upscale_keeps_16_bit_png_and_daemon_matches_in_process(daemon, models_dir, tmp_path, capsys):
    image = (random_image(10, 12, 3) * 65535).astype(np.uint16)
    write_image(tmp_path / "deep.png", image)
    outputs = {}
    for where, extra in (("daemon", ["--endpoint", daemon]), ("local", local_args(models_dir))):
        outputs[where] = tmp_path / f"{where}.png"
        code, _, err = run(["upscale", str(tmp_path / "deep.png"), "--scale", "2", "-o", str(outputs[where]),
                            "-q", *extra], capsys)
        assert code == 0, err
    result, fmt = read_image(outputs["daemon"])
    assert fmt["dtype"] == "u16" and result.shape == (20, 24, 3)
    assert len(np.unique(result)) > 256  # really 16-bit values, not 8-bit ones scaled up
    np.testing.assert_array_equal(result, read_image(outputs["local"])[0])


def test_an_empty_mask_leaves_the_image_unchanged(models_dir, images, tmp_path, capsys):
    Image.new("L", (40, 30), 0).save(tmp_path / "mask.png")
    code, _, err = run(["stylize", str(images / "a.png"), "--style", "starry_night", "--mask",
                        str(tmp_path / "mask.png"), "-o", str(tmp_path / "out.png"), "-q",
                        *local_args(models_dir)], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(read_image(tmp_path / "out.png")[0], read_image(images / "a.png")[0])


@pytest.mark.parametrize("argv, message", [
    (["stylize", "missing.png", "--style", "mosaic"], "no such file"),
    (["stylize", "{images}/a.png", "--style", "no_such_style"],
     "no style model named 'no_such_style' (style models: composition_vii, composition_vii_lite, mosaic, starry_night, "
     "starry_night_lite, "
     "the_scream, the_scream_lite, udnie, udnie_lite, wave, wave_lite)"),   # no SR model in the list
    (["stylize", "{images}", "--style", "mosaic"], "is a folder; give image files, e.g. '"),
    (["upscale", "{images}/a.png", "--scale", "4", "--model", "sr_x2"],
     "'sr_x2' upscales x2, not x4 (x4 models: sr_x4, "),
    (["stylize", "{images}/a.png", "{images}/b.jpg", "--style", "mosaic", "-o", "x.png"], "--out-dir"),
    (["stylize", "{images}/a.png", "--style", "mosaic", "--strength", "2"], "--strength"),
    (["stylize", "{images}/*.tif", "--style", "mosaic"], "no files match"),
    (["stylize", "{images}/a.png", "--style", "mosaic", "--mask", "{images}/b.jpg"], "mask"),
    (["stylize", "{images}/a.png", "--style", "mosaic", "-o", "{images}/a.png"], "overwrite"),
    (["upscale", "{images}/a.png", "--scale", "8", "--model", "mosaic"], "not a super-resolution model"),
    (["stylize", "{images}/a.png", "--style", "mosaic", "-o", "{images}/out.xyz"], "cannot write images with extension"),
])
def test_user_errors_are_one_line_and_exit_1(models_dir, images, capsys, argv, message):
    argv = [a.format(images=images) for a in argv] + local_args(models_dir)
    code, _, err = run(argv, capsys)
    assert code == 1
    assert message in err and err.startswith("brushwork: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("named", ["--endpoint", "BRUSHWORK_ENDPOINT"])
def test_a_named_daemon_that_does_not_answer_is_an_error_not_an_in_process_run(named, models_dir, images, tmp_path,
                                                                              capsys, monkeypatch):
    absent = f"ipc://{tmp_path}/absent.sock"
    monkeypatch.setenv("BRUSHWORK_ENDPOINT", absent)
    extra = ["--endpoint", absent] if named == "--endpoint" else []
    code, _, err = run(["stylize", str(images / "a.png"), "--style", "mosaic", "-o", str(tmp_path / "out.png"),
                        *ENGINE_ARGS, *extra], capsys)
    assert code == 1 and err.startswith(f"brushwork: error: no brushwork daemon answering at {absent}")
    assert "--local" in err and not (tmp_path / "out.png").exists()


def test_without_a_named_daemon_stderr_says_which_runs_the_job(daemon, models_dir, images, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.delenv("BRUSHWORK_ENDPOINT")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))   # the default endpoint: no daemon there
    code, _, err = run(["upscale", str(images / "a.png"), "--scale", "2", "-o", str(tmp_path / "bundled.png"),
                        *ENGINE_ARGS], capsys)
    assert code == 0, err
    assert err.startswith("brushwork: using the in-process engine on cpu (no daemon answers at ipc://")
    argv = ["upscale", str(images / "a.png"), "--scale", "2", "--model", "sr_x2", *ENGINE_ARGS]
    code, _, err = run([*argv, "-o", str(tmp_path / "local.png"), "--models", str(models_dir), "-q"], capsys)
    assert code == 0, err
    monkeypatch.setattr(protocol, "default_endpoint", lambda: daemon)   # now the default has a daemon
    code, _, err = run([*argv, "-o", str(tmp_path / "daemon.png")], capsys)
    assert code == 0 and err == f"brushwork: using the daemon at {daemon}\n"
    np.testing.assert_array_equal(read_image(tmp_path / "daemon.png")[0], read_image(tmp_path / "local.png")[0])
    # models of one's own are this process's: the daemon serves its own
    code, _, err = run([*argv, "-o", str(tmp_path / "own.png"), "--models", str(models_dir)], capsys)
    assert code == 0 and err.startswith("brushwork: using the in-process engine on cpu (--models / --no-bundled")
    np.testing.assert_array_equal(read_image(tmp_path / "own.png")[0], read_image(tmp_path / "local.png")[0])
    code, _, err = run([*argv, "-o", str(tmp_path / "named.png"), "--models", str(models_dir), "--endpoint", daemon],
                       capsys)
    assert code == 1 and "a daemon serves its own (`brushwork serve --models DIR`)" in err
    assert not (tmp_path / "named.png").exists()


def test_upscale_with_a_model_and_no_scale_uses_the_models_scale(daemon, images, tmp_path, capsys):
    code, _, err = run(["upscale", str(images / "b.jpg"), "--model", "sr_x8", "--out-dir", str(tmp_path), "-q",
                        "--endpoint", daemon], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "b-sr_x8.jpg")[0].shape == (24 * 8, 20 * 8, 3)
    code, _, err = run(["upscale", str(images / "b.jpg"), "--model", "sr_x8", "--scale", "2", "-o",
                        str(tmp_path / "x.png"), "--endpoint", daemon], capsys)
    assert code == 1 and "'sr_x8' upscales x8, not x2 (x2 models: sr_x2, " in err   # the daemon refuses it too


def test_a_job_waiting_in_the_daemons_queue_reports_how_many_are_ahead(daemon):
    import threading
    from backend import pixels
    from backend.client import Client
    fmt = {"dtype": "u8", "channels": "RGB"}
    big = pixels.encode(random_image(512, 640, 9), None, fmt)
    small = pixels.encode(random_image(16, 16, 2), None, fmt)
    started = threading.Event()
    with Client(daemon) as first, Client(daemon) as second:
        worker = threading.Thread(target=first.stylize, args=(big, 640, 512, fmt, "mosaic"),
                                  kwargs={"progress": lambda done, total, message: started.set()})
        worker.start()
        assert started.wait(30)
        messages = []
        second.stylize(small, 16, 16, fmt, "mosaic", progress=lambda done, total, message: messages.append(message))
        worker.join(60)
    assert messages[0] == "waiting, 1 job ahead"


def test_the_progress_text_is_the_tile_count_or_the_daemons_message():
    assert progress_text(3, 8, "") == "tile 3/8"
    assert progress_text(0, 0, "waiting, 2 jobs ahead") == "waiting, 2 jobs ahead"


def test_console_script_reports_user_errors_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "backend", "stylize", "missing.png", "--style", "x", "--local"],
                          cwd=tmp_path, env=daemon_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "brushwork: error: missing.png: no such file"


def test_usage_errors_exit_2(capsys):
    assert cli.main([]) == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["stylize"])  # no input files
    assert exc.value.code == 2


@pytest.mark.parametrize("command", [[], ["serve"], ["models"], ["stylize"], ["upscale"], ["install-plugin"],
                                     ["package-plugin"], ["train", "style"], ["train", "sr"], ["eval", "sr"],
                                     ["eval", "style"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: brushwork" in capsys.readouterr().out


def test_upscale_help_names_the_model_each_scale_uses_and_why(capsys):
    with pytest.raises(SystemExit):
        cli.main(["upscale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    store = model_store.ModelStore(include_user=False)
    for scale in (2, 4, 8):
        assert f"x{scale} {store.find_sr(scale).name}" in text
    assert "sr_x4_feat has crisper edges but paints a fine crosshatch on flat areas" in text


def test_the_command_line_is_built_without_importing_torch(tmp_path):
    """Every `brushwork` command builds the whole parser first; torch (seconds to import) loads
    only once a command runs a net."""
    code = ("import sys; from backend import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          env=daemon_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_models_lists_a_running_daemons_models_and_device_without_importing_torch(daemon, tmp_path):
    code = ("import sys; from backend import cli; status = cli.main(['models']); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(daemon_env(tmp_path),
                          BRUSHWORK_ENDPOINT=daemon), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"daemon at {daemon}: brushwork ") and "device cpu, precision fp32" in lines[0]
    assert any(line.split()[:3] == ["mosaic", "style", "x1"] for line in lines)
    assert lines[-1] == "torch imported: False"


def test_models_without_a_daemon_lists_the_installed_ones_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BRUSHWORK_ENDPOINT")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    code, out, err = run(["models"], capsys)
    assert code == 0 and err.startswith("brushwork: no daemon answers at ipc://")
    assert any(line.startswith("sr_x4_pixel") for line in out.splitlines())


def test_models_lists_models_and_problems(models_dir, tmp_path, capsys):
    extra = tmp_path / "extra"
    make_model(extra, "extra_style", "style", 1, seed=3, display_name="An Extra Style")
    (extra / "half.json").write_text("{not json")
    code, out, _ = run(["models", "--models", str(models_dir), "--models", str(extra)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "KIND", "SCALE"]
    row = next(line for line in lines if line.startswith("extra_style"))
    assert row.split()[:3] == ["extra_style", "style", "x1"] and "An Extra Style" in row and str(extra) in row
    assert any(line.startswith("sr_x4") and " sr " in line for line in lines)
    assert any(line.startswith("problem:") and "half.json" in line for line in lines)


def test_models_shows_iterations_and_marks_a_partly_trained_model(tmp_path, capsys):
    recipe = {"command": "brushwork train style ...", "iterations": 300, "planned_iterations": 2000,
              "stopped_early": True, "init": {"recipe": {"iterations": 1000}}}
    make_model(tmp_path, "rushed", "style", 1, recipe=recipe)
    make_model(tmp_path, "finished", "style", 1, recipe={"command": "brushwork train style ...", "iterations": 2000})
    code, out, _ = run(["models", "--models", str(tmp_path)], capsys)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "TRAINED" in rows["NAME"]
    assert "1,300 it. PARTLY TRAINED (300 of 2,000)" in rows["rushed"]
    assert "2,000 it." in rows["finished"] and "PARTLY" not in rows["finished"]


def test_models_without_any(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(model_store, "BUNDLED_MODELS_DIR", tmp_path / "no-bundled-models")
    code, out, _ = run(["models", "--models", str(tmp_path / "nothing")], capsys)
    assert code == 0 and out.startswith("no models installed")


def test_package_plugin_krita_builds_a_zip_with_the_client(tmp_path, capsys):
    import zipfile
    target = tmp_path / "dist" / "brushwork-krita.zip"
    code, out, err = run(["package-plugin", "krita", "-o", str(target)], capsys)
    assert code == 0, err
    assert str(target) in out
    names = zipfile.ZipFile(target).namelist()
    assert "brushwork.desktop" in names
    assert any(n.endswith("/client.py") for n in names) and any(n.endswith("/protocol.py") for n in names)


@pytest.mark.parametrize("where", ["daemon", "local"])
def test_ctrl_c_cancels_the_job_and_exits_130(daemon, models_dir, tmp_path, capsys, where):
    import os
    import signal
    import threading
    write_image(tmp_path / "big.png", (random_image(512, 640, 9) * 255).astype(np.uint8))
    extra = ["--endpoint", daemon] if where == "daemon" else local_args(models_dir)
    cli.build_parser()  # import what it needs now, so the signal arrives during the job
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code, _, err = run(["stylize", str(tmp_path / "big.png"), "--style", "mosaic", "-o",
                            str(tmp_path / "out.png"), *extra], capsys)
    finally:
        timer.join()
    assert code == 130 and err.startswith("brushwork: ")
    assert not (tmp_path / "out.png").exists()


def test_install_plugin_python_option_is_for_gimp_only(tmp_path, capsys):
    code, _, err = run(["install-plugin", "krita", "--home", str(tmp_path), "--python", "python3"], capsys)
    assert code == 1 and "--python applies to GIMP only" in err
    assert not (tmp_path / ".local").exists()


def test_install_plugin_krita_root_option_is_for_krita_only(tmp_path, capsys):
    code, _, err = run(["install-plugin", "gimp", "--home", str(tmp_path), "--krita-root", "/"], capsys)
    assert code == 1 and "--krita-root applies to Krita only" in err
    assert not (tmp_path / ".config").exists()
