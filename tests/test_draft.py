"""Lite nets in the model list and `brushwork stylize --draft`: a style names its lite net (``lite``),
a lite net its teacher (``teacher``), in the daemon's ``info`` and in-process; ``--draft`` runs the
lite net, or says how to make one. The lite net is a real one (``lite_models_dir``: distilled from
the bundled udnie by the real trainer)."""

import json

import numpy as np
import pytest

from backend import cli, protocol
from backend.client import Client
from backend.image_io import read_image, write_image
from backend.model_store import ModelStore, lite_versions
from daemon_process import ENGINE_ARGS, start_daemon, stop_daemon
from helpers import make_model, random_image
from test_cli import private_user_dirs  # noqa: F401 (autouse: no user models, no daemon at the default endpoint)


@pytest.fixture(scope="module")
def sketch_dir(tmp_path_factory):
    """A folder holding ``sketch``, a style with no lite net (random weights)."""
    directory = tmp_path_factory.mktemp("sketch")
    make_model(directory, "sketch", architecture={"channels": 8, "blocks": 1})
    return directory


@pytest.fixture(scope="module")
def daemon(lite_models_dir, sketch_dir, tmp_path_factory):
    """A daemon serving the bundled models (starry_night_lite among them), udnie_lite and sketch."""
    tmp = tmp_path_factory.mktemp("draft")
    endpoint = f"ipc://{tmp}/draft.sock"
    proc = start_daemon(tmp, endpoint, lite_models_dir, "--models", str(sketch_dir))
    yield endpoint
    stop_daemon(proc)


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    write_image(path, (random_image(40, 48, 5) * 255 + 0.5).astype(np.uint8))
    return path


def by_name(models):
    return {m["name"]: m for m in models}


def test_the_daemons_info_names_each_lite_net_and_the_style_it_is_the_lite_version_of(daemon):
    with Client(daemon) as client:
        models = by_name(client.info()["models"])
    assert models["udnie_lite"]["teacher"] == "udnie" and "lite" not in models["udnie_lite"]
    assert models["udnie"]["lite"] == "udnie_lite" and "teacher" not in models["udnie"]
    assert models["starry_night"]["lite"] == "starry_night_lite"          # the bundled lite net
    assert models["starry_night_lite"]["teacher"] == "starry_night"
    assert models["the_scream"]["lite"] == "the_scream_lite" and models["the_scream_lite"]["teacher"] == "the_scream"
    assert models["wave"]["lite"] == "wave_lite" and models["wave_lite"]["teacher"] == "wave"
    assert models["composition_vii"]["lite"] == "composition_vii_lite"
    paired = ("udnie", "udnie_lite", "starry_night", "starry_night_lite", "the_scream", "the_scream_lite", "wave",
              "wave_lite", "composition_vii", "composition_vii_lite")
    assert not any("lite" in m or "teacher" in m for name, m in models.items() if name not in paired)


def test_in_process_summaries_say_the_same(lite_models_dir):
    store = ModelStore(lite_models_dir, include_user=False)
    summaries = by_name(summary for _, summary in store.summaries())
    assert summaries["udnie_lite"]["teacher"] == "udnie" and summaries["udnie"]["lite"] == "udnie_lite"
    assert store.get("udnie_lite").teacher == "udnie" and store.get("udnie").teacher is None


def test_a_lite_net_whose_teacher_is_not_installed_is_no_ones_lite_version(lite_models_dir):
    store = ModelStore(lite_models_dir, include_bundled=False, include_user=False)
    summaries = by_name(summary for _, summary in store.summaries())
    assert summaries == {"udnie_lite": summaries["udnie_lite"]} and summaries["udnie_lite"]["teacher"] == "udnie"


def test_a_style_with_several_lite_nets_prefers_name_lite_else_the_first_by_name(lite_models_dir, tmp_path):
    extra = tmp_path / "extra"
    make_model(extra, "mosaic", seed=1)
    make_model(extra, "mosaic_small", architecture={"channels": 8, "blocks": 1}, teacher="mosaic")
    make_model(extra, "mosaic_fast", architecture={"channels": 8, "blocks": 1}, teacher="mosaic")
    make_model(extra, "udnie_tiny", architecture={"channels": 8, "blocks": 1}, teacher="udnie")
    store = ModelStore([lite_models_dir, extra], include_user=False)
    assert lite_versions(store.list()) == {"mosaic": "mosaic_fast", "udnie": "udnie_lite",
                                           "starry_night": "starry_night_lite", "the_scream": "the_scream_lite",
                                           "wave": "wave_lite", "composition_vii": "composition_vii_lite"}


@pytest.mark.parametrize("teacher", [42, "Not A Name", "self", ""])
def test_a_bad_teacher_is_that_models_problem(tmp_path, teacher):
    make_model(tmp_path, "good", seed=1)
    path = make_model(tmp_path, "bad", seed=2)
    meta = json.loads(path.read_text())
    meta["teacher"] = "bad" if teacher == "self" else teacher
    path.write_text(json.dumps(meta))
    store = ModelStore(tmp_path, include_bundled=False, include_user=False)
    assert [m.name for m in store.list()] == ["good"]
    assert len(store.problems) == 1 and "bad.json" in store.problems[0] and "teacher" in store.problems[0]


def test_an_sr_model_has_no_teacher(tmp_path):
    path = make_model(tmp_path, "sr_x2", "sr", 2)
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "teacher": "udnie"}))
    store = ModelStore(tmp_path, include_bundled=False, include_user=False)
    assert store.list() == [] and "teacher is for style models" in store.problems[0]


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("where", ["daemon", "local"])
def test_models_marks_lite_nets_and_the_styles_that_have_one(daemon, lite_models_dir, sketch_dir, capsys, where):
    local = ["--models", lite_models_dir, "--models", sketch_dir]
    code, out, _ = run(["models", *(["--endpoint", daemon] if where == "daemon" else local)], capsys)
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and "LITE" in rows["NAME"]
    assert "lite version of udnie" in rows["udnie_lite"] and "draft: udnie_lite" in rows["udnie"]
    assert "lite" not in rows["sketch"].split("x1", 1)[1]


def stylize_directly(endpoint, path, model):
    pixels, fmt = read_image(path)
    height, width = pixels.shape[:2]
    with Client(endpoint) as client:
        result = client.stylize(pixels, width, height, fmt, model)
    return np.frombuffer(result.pixels, np.uint8).reshape(height, width, -1)


@pytest.mark.parametrize("where", ["daemon", "local"])
def test_draft_runs_the_styles_lite_net(daemon, lite_models_dir, photo_file, capsys, where):
    place = ["--endpoint", daemon] if where == "daemon" else ["--local", "--models", lite_models_dir, *ENGINE_ARGS]
    code, _, err = run(["stylize", photo_file, "--style", "udnie", "--draft", *place], capsys)
    assert code == 0 and "draft: running udnie_lite, the lite version of udnie" in err
    drafted = read_image(photo_file.with_name("photo-udnie-draft.png"))[0]
    lite = stylize_directly(daemon, photo_file, "udnie_lite")
    full = stylize_directly(daemon, photo_file, "udnie")
    assert np.abs(drafted.astype(int) - lite.astype(int)).max() <= 1      # the daemon and fp32 in-process agree
    assert np.abs(drafted.astype(int) - full.astype(int)).mean() > 5      # not the full net's result


def test_draft_of_a_lite_net_named_directly_runs_it(daemon, photo_file, capsys):
    code, _, err = run(["stylize", photo_file, "--style", "udnie_lite", "--draft", "--endpoint", daemon], capsys)
    assert code == 0 and "draft: running udnie_lite\n" in err
    drafted = read_image(photo_file.with_name("photo-udnie_lite-draft.png"))[0]
    assert np.array_equal(drafted, stylize_directly(daemon, photo_file, "udnie_lite"))


@pytest.mark.parametrize("where", ["daemon", "local"])
def test_draft_of_a_style_without_a_lite_net_says_how_to_make_one(daemon, sketch_dir, photo_file, capsys, where):
    place = ["--endpoint", daemon] if where == "daemon" else ["--local", "--models", sketch_dir, *ENGINE_ARGS]
    code, _, err = run(["stylize", photo_file, "--style", "sketch", "--draft", *place], capsys)
    assert code == protocol.EXIT_ERROR
    assert "'sketch' has no lite (draft) version: make one with `brushwork train distill --teacher sketch`" in err
    assert list(photo_file.parent.iterdir()) == [photo_file]


def test_draft_model_by_info(daemon):
    with Client(daemon) as client:
        models = client.info()["models"]
    assert protocol.draft_model(models, "udnie") == "udnie_lite"
    assert protocol.draft_model(models, "udnie_lite") == "udnie_lite"
    assert protocol.draft_model(models, "no_such_style") == "no_such_style"   # the daemon refuses it by name
    assert protocol.draft_model(models, "starry_night") == "starry_night_lite"     # bundled
    assert protocol.draft_model(models, "the_scream") == "the_scream_lite"         # bundled
    assert protocol.draft_model(models, "wave") == "wave_lite"                     # bundled
    assert protocol.draft_model(models, "composition_vii") == "composition_vii_lite"
    with pytest.raises(protocol.BadRequest, match="train distill --teacher sketch"):
        protocol.draft_model(models, "sketch")


def test_krita_gallery_lists_each_style_once_and_the_draft_switch_follows_the_chosen_style(daemon, tmp_path):
    from installed_plugins import krita_module
    gallery = krita_module("styles")
    with Client(daemon) as client:
        models = client.info()["models"]
    shown = [m["name"] for m in gallery.gallery_styles(models)]
    assert "udnie" in shown and "udnie_lite" not in shown and "sketch" in shown and "sr_x4_pixel" not in shown
    assert gallery.draft_switch(models, "udnie")[0] and gallery.draft_model(models, "udnie") == "udnie_lite"
    enabled, tooltip = gallery.draft_switch(models, "sketch")
    assert not enabled and "`brushwork train distill --teacher sketch`" in tooltip
    assert gallery.draft_model(models, "sketch") is None                  # the full net runs
    # without its teacher the lite net is a style of its own
    alone = [m for m in models if m["name"] != "udnie"]
    assert "udnie_lite" in [m["name"] for m in gallery.gallery_styles(alone)]


def test_krita_layer_names_say_draft_and_lose_it_when_stylised_again():
    from installed_plugins import krita_module
    name = krita_module("styles").result_layer_name
    assert name("Photo", "Udnie", ["Udnie", "Wave"], draft=True) == "Photo (Udnie) (draft)"
    assert name("Photo (Udnie) (draft)", "Wave", ["Udnie", "Wave"]) == "Photo (Wave)"


def test_gimp_style_choices_leave_out_lite_nets_of_listed_styles(daemon, tmp_path):
    from installed_plugins import gimp_module
    model_list = gimp_module("model_list")
    with Client(daemon) as client:
        model_list.remember(tmp_path, client.info()["models"])
    models = model_list.last_known(tmp_path)                              # what the dialogs see, remembered
    names = [name for name, _ in model_list.choices(models, "style")]
    assert "udnie" in names and "udnie_lite" not in names
    assert "udnie_lite" in model_list.draft_note(models, "udnie")
    assert "`brushwork train distill --teacher sketch`" in model_list.draft_note(models, "sketch")
