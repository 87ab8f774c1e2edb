"""Lite nets made by the daemon: ``distill`` requests (a lite version of an installed style) and
``train_style`` requests with ``lite`` (the new style, then its lite version). A real daemon
subprocess, the real client and trainer processes, tiny sizes and a few iterations."""

import json
import threading
from pathlib import Path

import pytest

from backend import protocol
from backend.client import Client
# the training daemon's fixtures: this module gets a daemon of its own (module scope)
from test_train_job import client, content_dir, daemon  # noqa: F401
from test_train_job import FMT, TINY, VGG_WEIGHTS, style_request_image, trainer_pids, wait_until

pytestmark = pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"needs the VGG-16 weights at {VGG_WEIGHTS}")

LITE_TINY = {"size": 32, "pool": 4, "batch": 2, "channels": 4, "blocks": 1}   # a second or two of targets


def metadata(model):
    return json.loads(Path(model["path"]).read_text(encoding="utf-8"))


def listed(client):
    return {m["name"]: m for m in client.info()["models"]}


def test_a_distill_request_makes_a_lite_net_of_an_installed_style(daemon, client, models_dir):
    progress = []
    model = client.distill("mosaic", iterations=2, progress=lambda *p: progress.append(p), **LITE_TINY)

    assert model["name"] == "mosaic_lite" and model["kind"] == "style"
    assert Path(model["path"]) == daemon.train_out / "mosaic_lite.json"
    assert metadata(model)["teacher"] == "mosaic" and model["recipe"]["pool"] == 4
    assert model["recipe"]["iterations"] == 2 and model["architecture"]["channels"] == 4
    assert "--time-limit 900" in model["recipe"]["command"]   # the editors' default, from DISTILL_OPTIONS
    messages = [message for _, _, message in progress]
    assert all(message.startswith("lite version: ") for message in messages)
    assert ("lite version: the teacher's examples: 4 of 4") in messages   # the targets, counted
    assert [(d, t) for d, t, m in progress if "loss" in m][-1] == (2, 2)
    assert listed(client)["mosaic_lite"]["path"] == model["path"]
    assert (models_dir / "mosaic.json").is_file()   # the teacher is untouched


def test_a_style_with_a_lite_version_makes_both_in_one_request(daemon, client):
    progress = []
    image = style_request_image()
    style, lite, error = client.train_style_and_lite(image, image.shape[1], image.shape[0], FMT, "Chained",
                                                     iterations=2, lite={"iterations": 2, **LITE_TINY},
                                                     progress=lambda *p: progress.append(p), **TINY)

    assert error is None
    assert style["name"] == "chained" and style["recipe"]["iterations"] == 2 and "teacher" not in metadata(style)
    assert lite["name"] == "chained_lite" and lite["display_name"] == "Chained (lite)"
    assert metadata(lite)["teacher"] == "chained" and lite["recipe"]["teacher_sha256"] == metadata(style)["sha256"]
    phases = [message.split(": ")[0] for _, _, message in progress]
    assert phases[0] == "style" and phases[-1] == "lite version"
    assert phases == sorted(phases, key=["style", "lite version"].index)   # the style first, then its lite version
    assert {"chained", "chained_lite"} <= set(listed(client))


def train_style_and_lite_in_thread(daemon, name, outcome, progress, **options):
    """A started thread that trains style ``name`` and its lite version on its own connection,
    appending progress to ``progress`` and putting the client's result in ``outcome["result"]``."""
    image = style_request_image()

    def train():
        with Client(daemon.endpoint, timeout=30) as own:
            outcome["result"] = own.train_style_and_lite(image, image.shape[1], image.shape[0], FMT, name,
                                                         progress=lambda *p: progress.append(p), **TINY, **options)
    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    return thread


def test_cancel_during_the_lite_version_keeps_the_style(daemon, client, content_dir):
    progress, outcome, cancel = [], {}, threading.Event()
    thread = train_style_and_lite_in_thread(daemon, "Kept Style", outcome, progress, iterations=2,
                                            lite={"iterations": 100_000, **LITE_TINY}, should_cancel=cancel.is_set)
    wait_until(lambda: any(m.startswith("lite version: loss") for _, _, m in progress) or not thread.is_alive(),
               timeout=240, what="the lite version's first iterations")
    cancel.set()
    thread.join(60)
    assert not thread.is_alive() and "result" in outcome, outcome

    style, lite, error = outcome["result"]
    assert style["name"] == "kept_style" and lite is None
    assert isinstance(error, protocol.Cancelled)
    models = listed(client)
    assert "kept_style" in models and "kept_style_lite" not in models
    assert not (daemon.train_out / "kept_style_lite.json").exists()
    wait_until(lambda: not trainer_pids(str(content_dir)), timeout=30, what="the trainer to exit")


def test_stop_and_keep_during_the_style_saves_it_and_makes_no_lite_version(daemon, client):
    progress, outcome, stop = [], {}, threading.Event()
    thread = train_style_and_lite_in_thread(daemon, "Stopped Style", outcome, progress, iterations=100_000,
                                            lite={"iterations": 2, **LITE_TINY}, should_stop=stop.is_set)
    wait_until(lambda: any(m.startswith("style: loss") and d >= 2 for d, _, m in progress) or not thread.is_alive(),
               timeout=240, what="two of the style's iterations")
    stop.set()
    thread.join(120)
    assert not thread.is_alive() and "result" in outcome, outcome

    style, lite, error = outcome["result"]
    assert style["name"] == "stopped_style" and style["partly_trained"] is True and lite is None
    assert isinstance(error, protocol.Cancelled) and "stopped early" in str(error)
    assert not any(m.startswith("lite version") for _, _, m in progress)
    assert "stopped_style_lite" not in listed(client)


def test_a_distill_request_with_the_two_step_recipe_names_its_part_and_stop_keeps_the_model(daemon, client):
    """The full recipe from an editor: progress names the part, and Stop keeps the model as far as
    it came (test_distill_recipe.py runs all the parts, in the trainer)."""
    progress, stop = [], threading.Event()

    def on_progress(done, total, message):
        progress.append((done, total, message))
        if message.startswith("lite version: part 1 of 7: loss") and done >= 2:
            stop.set()
    model = client.distill("mosaic", name="mosaic_full", recipe="two-step", progress=on_progress,
                           should_stop=stop.is_set, **LITE_TINY)

    assert Path(model["path"]) == daemon.train_out / "mosaic_full.json" and model["partly_trained"] is True
    recipe = model["recipe"]
    assert recipe["command"].endswith("# part step1, 1 of 7") and recipe["stopped_early"] is True
    assert "--time-limit" not in recipe["command"] and "--iterations" not in recipe["command"]
    assert recipe["planned_iterations"] == 2000 and recipe["lr"] == 2e-3     # step 1's, set by the recipe
    assert "lite version: the teacher's examples: 4 of 4" in [m for _, _, m in progress]


@pytest.mark.parametrize("teacher, fields, words", [
    ("mosaic", {"recipe": "fast"}, "'recipe' must be one of 'two-step', 'single', got 'fast'"),
    ("mosaic", {"recipe": "two-step", "iterations": 5}, r"leave out \['iterations'\], or ask for recipe 'single'"),
    ("no_such_style", {}, "teacher 'no_such_style': there is no model of that name; a teacher is a style model"),
    ("sr_x2", {}, "it is an sr model"),
    (None, {}, "'teacher'"),
    ("mosaic", {"name": "mosaic"}, "as its teacher"),
    ("mosaic", {"name": "starry_night"}, "already exists"),
    ("mosaic", {"style_size": 64}, "unknown distill field"),
    ("mosaic", {"pool": 0}, "'pool' must be an integer from 1"),
    ("mosaic", {"size": 16}, "'size' must be an integer from 32"),
    ("mosaic", {"pool": 20_000, "size": 1024}, "GiB"),
    ("mosaic", {"pool": 2, "batch": 4}, "at least 'batch'"),
])
def test_bad_distill_requests_are_refused_with_a_reason(client, teacher, fields, words):
    with pytest.raises(protocol.BadRequest, match=words):
        client.distill(teacher, **fields)


@pytest.mark.parametrize("lite, words", [
    ({"style_size": 64}, "unknown distillation option"),
    ("yes", "'lite' must be an object of distillation options"),
    ({"iterations": 0}, "'iterations' must be an integer from 1"),
])
def test_bad_lite_versions_are_refused_before_training(client, lite, words):
    image = style_request_image()
    with pytest.raises(protocol.BadRequest, match=words):
        client.train_style_and_lite(image, image.shape[1], image.shape[0], FMT, "never", lite=lite, **TINY)
    assert "never" not in listed(client)


def test_a_lite_name_too_long_is_refused(client):
    image = style_request_image()
    with pytest.raises(protocol.BadRequest, match="lite version's name .* too long"):
        client.train_style_and_lite(image, image.shape[1], image.shape[0], FMT, "x" * 64, **TINY)

