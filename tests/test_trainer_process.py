"""The daemon's trainer process (backend/daemon/trainer_process.py): the real ``python -m trainer``
in a child process with the shared Caffe VGG-16 weights, tiny sizes and a few iterations."""

import threading

import numpy as np
import pytest
from PIL import Image

from backend.daemon.trainer_process import DAEMON_SETTINGS, TrainerProcess, trainer_arguments
from backend.model_store import ModelStore
from backend.protocol import DISTILL_OPTIONS, TRAIN_OPTIONS
from helpers import shared_dir
from trainer.checkpoint import latest_checkpoint
from trainer.cli import build_parser

SHARED = shared_dir()
STYLE = SHARED / "data" / "styles" / "udnie.jpg"
CONTENT = SHARED / "data" / "content"
WEIGHTS = SHARED / "weights" / "vgg16_caffe_relu4_3.pth"


def test_every_option_reaches_the_trainer_under_its_own_name():
    """Each training option (and each setting the daemon adds) becomes a ``train style`` flag
    that the trainer parses back to the same value; a switch that is off is left out."""
    options = {name: option.high if option.kind is not bool else True for name, option in TRAIN_OPTIONS.items()}
    options.update(name="job_style", display_name="Job Style", device="cpu", precision="fp32",
                   vgg_weights=str(WEIGHTS), estimate=True, style="s.png", content="photos")
    assert set(options) == {*TRAIN_OPTIONS, *DAEMON_SETTINGS} - {"teacher", "models"}
    args = build_parser().parse_args(["train", "style", *trainer_arguments(options)])
    parsed = {name: getattr(args, name) for name in options}
    paths = ("vgg_weights", "style", "content")
    assert {**parsed, **{name: str(parsed[name]) for name in paths}} == options


@pytest.mark.parametrize("recipe", ["two-step", "single"])
def test_every_distillation_option_reaches_the_trainer_under_its_own_name(recipe):
    values = {name: option.high for name, option in DISTILL_OPTIONS.items() if option.kind is not str}
    options = dict(values, recipe=recipe, name="job_lite", teacher="job_style", models="/models", content="photos",
                   device="cpu")
    args = build_parser().parse_args(["train", "distill", *trainer_arguments(options)])
    assert {name: getattr(args, name) for name in DISTILL_OPTIONS} == {**values, "recipe": recipe}
    assert args.teacher == "job_style" and args.models == ["/models"] and str(args.content) == "photos"
    assert trainer_arguments({"flip": False, "blocks": None}) == []
    with pytest.raises(ValueError, match="unknown training option 'run_folder'"):
        trainer_arguments({"run_folder": "/tmp"})


def test_the_trainers_defaults_are_the_described_ones():
    args = build_parser().parse_args(["train", "style", "--style", "s.png", "--content", "photos"])
    assert {name: getattr(args, name) for name in TRAIN_OPTIONS} == \
        {name: option.default for name, option in TRAIN_OPTIONS.items()}


def start_job(tmp_path, iterations, style=STYLE, **callbacks):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    options = {"style": style, "content": CONTENT, "name": "job_style", "iterations": iterations, "size": 48,
               "style_size": 64, "batch": 1, "channels": 8, "blocks": 1, "precision": "fp32",
               "vgg_weights": str(WEIGHTS), "checkpoint_every": 1000}
    return TrainerProcess("style", run_dir, options, tmp_path / "models", **callbacks).start()


def test_job_trains_in_a_subprocess_and_reports_the_model(tmp_path):
    events, finished = [], threading.Event()
    style = tmp_path / "style.png"
    Image.fromarray(np.asarray(Image.open(STYLE).convert("RGB").resize((64, 64)))).save(style)
    job = start_job(tmp_path, 3, style, on_progress=lambda d, t, m: events.append((d, t)),
                    on_done=lambda info: (events.append(info), finished.set()),
                    on_error=lambda e: (events.append(e), finished.set()))
    assert job.wait(240), "training job did not finish"
    assert finished.is_set()
    assert events[-1] == {"name": "job_style", "path": str(tmp_path / "models" / "job_style.json")}, events
    assert events[-2] == (3, 3)
    assert ModelStore(tmp_path / "models", include_bundled=False, include_user=False).get("job_style")
    assert (tmp_path / "run" / "trainer.log").is_file()


def test_job_cancel_terminates_the_trainer(tmp_path):
    progressed, errors = threading.Event(), []
    job = start_job(tmp_path, 100000, on_progress=lambda *a: progressed.set(), on_error=errors.append)
    assert progressed.wait(240), "no progress from the training job"
    job.cancel()
    assert job.wait(30)
    assert not job.running and job.process.returncode != 0
    assert [e.code for e in errors] == ["cancelled"]
    assert not (tmp_path / "models" / "job_style.json").exists()
    assert latest_checkpoint(tmp_path / "run") is not None   # SIGTERM checkpoints before exiting


def test_job_stopped_early_exports_what_it_learnt_marked_as_such(tmp_path):
    progressed, finished, results, errors = threading.Event(), threading.Event(), [], []
    job = start_job(tmp_path, 100000, on_progress=lambda done, total, message: done >= 2 and progressed.set(),
                    on_done=lambda info: (results.append(info), finished.set()),
                    on_error=lambda e: (errors.append(e), finished.set()))
    assert progressed.wait(240), "no progress from the training job"
    assert job.stop()
    assert job.wait(60) and finished.is_set() and not errors, errors
    model = ModelStore(tmp_path / "models", include_bundled=False, include_user=False).get("job_style")
    recipe = model.metadata["recipe"]
    assert recipe["stopped_early"] is True and recipe["planned_iterations"] == 100000
    assert 2 <= recipe["iterations"] < 100000
    assert model.summary()["partly_trained"] is True and model.summary()["iterations"] == recipe["iterations"]
    assert latest_checkpoint(tmp_path / "run").name == f"checkpoint_{recipe['iterations']:07d}.pt"
