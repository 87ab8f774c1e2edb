"""``train_style`` requests end to end: a real daemon subprocess, the real client, the real
trainer process with the shared Caffe VGG-16 weights, tiny sizes and a few iterations."""

import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import protocol
from backend.client import Client
from backend.nets import edge_hiding_border
from daemon_process import daemon_output, start_daemon, stop_daemon
from helpers import shared_dir, training_photos
from trainer.checkpoint import latest_checkpoint

VGG_WEIGHTS = shared_dir() / "weights" / "vgg16_caffe_relu4_3.pth"
pytestmark = pytest.mark.skipif(not VGG_WEIGHTS.is_file(), reason=f"needs the VGG-16 weights at {VGG_WEIGHTS}")

FMT = {"dtype": "u8", "channels": "RGBA"}
TINY = {"size": 32, "style_size": 32, "batch": 1, "channels": 8, "blocks": 1}  # seconds per run on a CPU
BORDER = 4  # transparent pixels around the style image, cropped away by the daemon


def style_request_image(width=56, height=48):
    """A painting from shared/ as u8 RGBA with a fully transparent border and a half-transparent row."""
    painting = sorted((shared_dir() / "data" / "styles").glob("*.jpg"))[0]
    with Image.open(painting) as img:
        rgb = np.asarray(img.convert("RGB").resize((width - 2 * BORDER, height - 2 * BORDER)))
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[BORDER:-BORDER, BORDER:-BORDER, :3] = rgb
    rgba[BORDER:-BORDER, BORDER:-BORDER, 3] = 255
    rgba[BORDER, BORDER:-BORDER, 3] = 128
    return rgba


def trainer_pids(marker):
    """Pids of live trainer processes whose command line mentions ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"trainer" in cmdline and any(marker.encode() in arg for arg in cmdline) and state != "Z":
            pids.append(int(proc.name))
    return pids


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


class Training:
    """A train_style call running in a thread, recording its progress; ``cancel()`` asks it to stop,
    ``stop()`` to stop early and keep the model."""

    def __init__(self, endpoint, name, **options):
        self.progress, self.result, self.error = [], None, None
        self._cancel, self._stop = threading.Event(), threading.Event()
        image = style_request_image()
        self.client = Client(endpoint, timeout=30)

        def run():
            try:
                self.result = self.client.train_style(image, image.shape[1], image.shape[0], FMT, name,
                                                      progress=lambda *p: self.progress.append(p),
                                                      should_cancel=self._cancel.is_set,
                                                      should_stop=self._stop.is_set, **options)
            except protocol.BrushworkError as exc:
                self.error = exc
            finally:
                self.client.close()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def iterations_done(self):
        return max((done for done, total, _ in self.progress if total), default=0)

    def cancel(self):
        self._cancel.set()

    def stop(self):
        self._stop.set()

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "train_style did not return"
        return self


@pytest.fixture(scope="module")
def content_dir(tmp_path_factory):
    """Three photos of the shared Sun-Hays set."""
    return training_photos(tmp_path_factory.mktemp("content"))


@pytest.fixture(scope="module")
def daemon(models_dir, content_dir, tmp_path_factory):
    """A daemon training on ``content_dir`` into its own --train-out dir."""
    tmp = tmp_path_factory.mktemp("train-daemon")
    proc = start_daemon(tmp, f"ipc://{tmp}/s.sock", models_dir, "--content", str(content_dir),
                        "--train-out", str(tmp / "trained"))
    proc.endpoint, proc.train_out = f"ipc://{tmp}/s.sock", tmp / "trained"
    yield proc
    assert stop_daemon(proc) == 0, daemon_output(proc)


@pytest.fixture
def client(daemon):
    with Client(daemon.endpoint, timeout=30) as c:
        yield c


def train_request(client, name="tiny", image=None, **options):
    image = style_request_image() if image is None else image
    return client.train_style(image, image.shape[1], image.shape[0], FMT, name, **options)


def test_training_streams_progress_then_the_model_is_served(daemon, client):
    progress = []
    model = train_request(client, "Tiny Waves", iterations=3, seed=1, progress=lambda *p: progress.append(p), **TINY)

    assert model["name"] == "tiny_waves" and model["display_name"] == "Tiny Waves" and model["kind"] == "style"
    assert model["recipe"]["iterations"] == 3 and model["architecture"]["channels"] == 8
    assert model["recipe"]["zoom"] == 2 and model["recipe"]["flip"] is True  # the editors' defaults
    assert model["architecture"]["border"] == edge_hiding_border(TINY["blocks"])  # hides the edge from the net
    assert Path(model["path"]) == daemon.train_out / "tiny_waves.json"
    counted = [(done, total) for done, total, _ in progress if total]
    assert counted[-1] == (3, 3) and [d for d, _ in counted] == sorted(d for d, _ in counted)
    assert any("loss" in message for _, total, message in progress if total)

    listed = {m["name"]: m for m in client.info()["models"]}
    assert listed["tiny_waves"]["path"] == model["path"]
    image = style_request_image()
    result = client.stylize(image, image.shape[1], image.shape[0], FMT, "tiny_waves")
    assert (result.width, result.height) == (image.shape[1], image.shape[0])
    assert np.frombuffer(result.pixels, np.uint8).reshape(image.shape)[..., :3].std() > 0

    # the style image the trainer saw: the transparent border cropped, the half-transparent row on white
    style = np.asarray(Image.open(model["data"]["style_image"]))
    assert style.shape == (48 - 2 * BORDER, 56 - 2 * BORDER, 3)
    sent = style_request_image()[BORDER, BORDER:-BORDER, :3].astype(float)
    assert np.abs(style[0] - (sent * 128 / 255 + 255 * 127 / 255)).max() <= 1


def test_cancel_stops_the_trainer_while_other_clients_are_served(daemon, content_dir):
    training = Training(daemon.endpoint, "never_finished", iterations=100_000, **TINY)
    wait_until(lambda: training.iterations_done() >= 1 or training.error, what="the first training iteration")
    assert training.error is None
    pids = trainer_pids(str(content_dir))
    assert len(pids) == 1

    with Client(daemon.endpoint, timeout=30) as other:   # the compute worker is free for others
        image = style_request_image()
        deadline = time.monotonic() + 60  # a stylize queued behind the training would wait for ever
        result = other.stylize(image, image.shape[1], image.shape[0], FMT, "mosaic",
                               should_cancel=lambda: time.monotonic() > deadline)
        assert len(result.pixels) == image.nbytes
        with pytest.raises(protocol.Busy, match="at a time"):
            train_request(other, "second", iterations=2, **TINY)
    assert training.thread.is_alive() and trainer_pids(str(content_dir)) == pids

    training.cancel()
    assert isinstance(training.join().error, protocol.Cancelled)
    wait_until(lambda: not trainer_pids(str(content_dir)), timeout=15, what="the trainer to exit")
    with Client(daemon.endpoint, timeout=30) as other:
        assert "never_finished" not in [m["name"] for m in other.info()["models"]]
    assert not (daemon.train_out / "never_finished.json").exists()


def test_stop_ends_the_training_early_and_keeps_what_it_learnt(daemon, client, content_dir):
    training = Training(daemon.endpoint, "Stopped Early", iterations=100_000, **TINY)
    wait_until(lambda: training.iterations_done() >= 2 or training.error, what="two training iterations")
    training.stop()
    model = training.join().result
    assert training.error is None, training.error
    assert model["name"] == "stopped_early" and model["partly_trained"] is True
    assert model["planned_iterations"] == 100_000 and 2 <= model["iterations"] < 100_000
    assert model["recipe"]["stopped_early"] is True and model["iterations"] == model["recipe"]["iterations"]
    assert any(message.startswith("stopping: saving the model") for _, _, message in training.progress)
    listed = {m["name"]: m for m in client.info()["models"]}["stopped_early"]
    assert listed["partly_trained"] is True and listed["iterations"] == model["iterations"]
    wait_until(lambda: not trainer_pids(str(content_dir)), timeout=15, what="the trainer to exit")


def test_estimate_is_measured_on_the_daemons_device_then_remembered(daemon, client, content_dir):
    image = style_request_image()
    progress = []
    estimate = client.estimate_training(image, image.shape[1], image.shape[0], FMT, "Estimated", iterations=500,
                                        progress=lambda *p: progress.append(p), **TINY)
    speed = estimate["s_per_iteration"]
    assert speed > 0 and estimate["iterations"] == 500 and estimate["seconds"] == pytest.approx(500 * speed)
    assert estimate["photos"] == 3 and estimate["hardware"]
    assert progress and all(total == 0 for _, total, _ in progress)   # iterations are only timed
    assert any("measuring" in message for _, _, message in progress)
    # the same net and crops again: the measured speed is remembered, no trainer runs
    again = client.estimate_training(image, image.shape[1], image.shape[0], FMT, "Estimated", iterations=2000,
                                     time_limit=60, **TINY)
    assert again["s_per_iteration"] == speed and again["seconds"] == pytest.approx(min(2000 * speed, 60))
    assert "estimated" not in [m["name"] for m in client.info()["models"]]
    assert not list(daemon.train_out.glob("estimated*")) and not trainer_pids(str(content_dir))


def test_a_client_can_turn_the_editor_defaults_off(client):
    model = train_request(client, "plain crops", iterations=1, zoom=1, flip=False, border=0, **TINY)
    assert "zoom" not in model["recipe"] and "flip" not in model["recipe"] and "border" not in model["architecture"]
    assert "--zoom 1" in model["recipe"]["command"] and "--flip" not in model["recipe"]["command"]


@pytest.mark.parametrize("fields, code, words", [
    ({"vgg_weights": "/etc/passwd"}, "bad_request", "unknown train_style field"),
    ({"iterations": 0}, "bad_request", "'iterations' must be an integer from 1"),
    ({"iterations": 2.5}, "bad_request", "'iterations' must be an integer"),
    ({"style_weight": float("nan")}, "bad_request", "'style_weight' must be a number"),
    ({"size": 30}, "bad_request", "multiple of 4"),
    ({"name": "  "}, "bad_request", "'name'"),
    ({"name": "mosaic"}, "bad_request", "already exists"),
    ({"mask": True}, "bad_request", "'mask'"),
    ({"flip": 1}, "bad_request", "'flip' must be true or false"),
    ({"zoom": 0.5}, "bad_request", "'zoom' must be a number from 1"),
    ({"border": 6}, "bad_request", "'border' must be a multiple of 4"),
    ({"iterations": 1_000_000}, "bad_request", "'iterations' must be an integer from 1 to 100000"),
    ({"checkpoint_every": 1}, "bad_request", "'checkpoint_every' must be an integer from 100 to 100000"),
])
def test_bad_train_requests_are_refused_with_a_reason(client, fields, code, words):
    fields = dict(fields)
    name = fields.pop("name", "fine")
    with pytest.raises(protocol.BrushworkError, match=words) as caught:
        client.train_style(bytes(16 * 16 * 4), 16, 16, FMT, name, **fields)
    assert caught.value.code == code


@pytest.mark.parametrize("alpha, size, error, words", [
    (0, 32, protocol.BadPixels, "fully transparent"),
    (255, 12, protocol.BadRequest, "at least 16x16"),
])
def test_unusable_style_images_are_refused(client, alpha, size, error, words):
    image = np.full((size, size, 4), alpha, np.uint8)
    with pytest.raises(error, match=words):
        train_request(client, "unusable", image=image, iterations=2)


def test_empty_content_folder_is_a_clear_error(client, content_dir, tmp_path):
    for path in content_dir.iterdir():
        path.rename(tmp_path / path.name)
    try:
        with pytest.raises(protocol.BadRequest, match="no images.*--content"):
            train_request(client, "no_photos", iterations=2)
    finally:
        for path in tmp_path.iterdir():
            path.rename(content_dir / path.name)


def test_without_content_folder_the_editor_names_its_own_on_a_local_daemon(models_dir, content_dir, tmp_path):
    """`make serve` gives no --content: a request without a folder is refused naming both ways
    out, and one naming the artist's own folder trains on it (the daemon's IPC socket is private)."""
    proc = start_daemon(tmp_path, f"ipc://{tmp_path}/s.sock", models_dir)
    try:
        assert "--content DIR" in daemon_output(proc)
        with Client(f"ipc://{tmp_path}/s.sock", timeout=30) as client:
            assert client.info()["training"] == {"content": False, "client_content": True, "iterations": 2000}
            with pytest.raises(protocol.BadRequest, match="choose a folder of your photos.*--content DIR"):
                train_request(client, iterations=2)
            with pytest.raises(protocol.BadRequest, match="absolute path"):
                train_request(client, iterations=2, content="photos")
            with pytest.raises(protocol.BadRequest, match=f"no images.*the chosen folder {tmp_path}"):
                train_request(client, iterations=2, content=str(tmp_path))
            model = train_request(client, "own photos", iterations=2, content=str(content_dir), **TINY)
            assert model["name"] == "own_photos" and model["data"]["content"] == str(content_dir)
            assert model["data"]["content_images"] == 3 and model["partly_trained"] is False
    finally:
        assert stop_daemon(proc) == 0


def test_a_tcp_daemon_reads_no_folder_a_client_names(models_dir, content_dir, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_daemon(tmp_path, endpoint, models_dir)
    try:
        with Client(endpoint, timeout=30) as client:
            assert client.info()["training"]["client_content"] is False
            with pytest.raises(protocol.BadRequest, match="does not read folders named by its clients"):
                train_request(client, iterations=2, content=str(content_dir))
    finally:
        assert stop_daemon(proc) == 0


def test_daemon_shutdown_cancels_training_and_leaves_no_process(models_dir, content_dir, tmp_path):
    endpoint = f"ipc://{tmp_path}/s.sock"
    proc = start_daemon(tmp_path, endpoint, models_dir, env={"BRUSHWORK_CONTENT": str(content_dir)})
    user_models = tmp_path / "xdg-data" / "brushwork" / "models"   # the default output dir
    assert f"3 content photos in {content_dir}; new models go to {user_models}" in daemon_output(proc)
    training = Training(endpoint, "interrupted", iterations=100_000, **TINY)
    wait_until(lambda: training.iterations_done() >= 1 or training.error, what="the first training iteration")
    assert len(trainer_pids(str(content_dir))) == 1

    assert stop_daemon(proc, signal.SIGTERM) == 0, daemon_output(proc)
    assert not trainer_pids(str(content_dir))
    assert isinstance(training.join().error, protocol.Cancelled)
    assert not (user_models / "interrupted.json").exists()


def test_a_daemon_killed_while_training_leaves_a_resumable_run_and_nothing_in_tmp(models_dir, content_dir, tmp_path):
    """kill -9 of the daemon: its trainer notices the broken pipe, checkpoints and stops (issue 19)."""
    endpoint = f"ipc://{tmp_path}/s.sock"
    proc = start_daemon(tmp_path, endpoint, models_dir, env={"BRUSHWORK_CONTENT": str(content_dir)})
    temp_before = set(Path(tempfile.gettempdir()).glob("brushwork-train-*"))
    training = Training(endpoint, "orphaned", iterations=100_000, **TINY)
    wait_until(lambda: training.iterations_done() >= 1 or training.error, what="the first training iteration")
    assert len(trainer_pids(str(content_dir))) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop_daemon(proc)
    wait_until(lambda: not trainer_pids(str(content_dir)), timeout=120, what="the trainer to stop")
    [run] = (tmp_path / "xdg-data" / "brushwork" / "runs").glob("orphaned-*")
    assert latest_checkpoint(run) is not None and (run / "style.png").is_file()
    assert "went away" in (run / "trainer.log").read_text(errors="replace")
    assert set(Path(tempfile.gettempdir()).glob("brushwork-train-*")) <= temp_before
