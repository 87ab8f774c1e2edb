"""Style training started from an editor: ``python -m trainer train style`` in a separate
process (so the daemon keeps serving), its JSON progress lines turned into callbacks.

    job = StyleTrainingJob(style_rgb, {"name": "my_style", "iterations": 2000}, content_dir,
                           models_dir, on_progress, on_done, on_error)
    job.start()
    ...
    job.cancel()        # terminates the trainer and its children

``on_progress(done, total, message)``, ``on_done(info)`` with info ``{"name", "path"}`` (with
option ``estimate``: ``{"estimate": {"s_per_iteration", "hardware", ...}}``, and no model),
``on_error(BrushworkError)`` (code ``cancelled`` after :meth:`cancel`) are called from the
job's reader thread. :meth:`stop` ends the training early and still exports the model.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backend.protocol import BrushworkError
from trainer.data import find_images
from trainer.loop import default_run_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# option name -> command-line flag of ``train style``
OPTION_FLAGS = {
    "name": "--name", "display_name": "--display-name", "iterations": "--iterations", "size": "--size",
    "style_size": "--style-size", "batch": "--batch", "lr": "--lr", "seed": "--seed",
    "content_weight": "--content-weight", "style_weight": "--style-weight", "tv_weight": "--tv-weight",
    "vgg": "--vgg", "vgg_weights": "--vgg-weights", "checkpoint_every": "--checkpoint-every",
    "run_dir": "--run-dir", "device": "--device", "precision": "--precision",
    "channels": "--channels", "blocks": "--blocks", "zoom": "--zoom", "flip": "--flip", "border": "--border",
    "time_limit": "--time-limit", "estimate": "--estimate",
}


def _write_style_png(style, directory):
    """The style image as a PNG file: ``style`` is a path or an H x W x 3 array
    (uint8, or float in [0, 1])."""
    if isinstance(style, (str, os.PathLike)):
        if not Path(style).is_file():
            raise BrushworkError(f"style image {style} not found", "bad_request")
        return Path(style)
    array = np.asarray(style)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 16:
        raise BrushworkError(f"style image must be an H x W x 3 RGB array of at least 16 px, got {array.shape}",
                             "bad_request")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    path = Path(directory) / "style.png"
    Image.fromarray(array).save(path)
    return path


class StyleTrainingJob:
    """One ``train style`` run in a child process (see the module docstring)."""

    def __init__(self, style, options, content_dir, models_dir=None, on_progress=None, on_done=None,
                 on_error=None):
        if not content_dir:
            raise BrushworkError("no content image folder is set: choose a folder of photos to train on "
                                 "(e.g. a few hundred landscape and portrait photos)", "bad_request")
        try:
            find_images(content_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise BrushworkError(f"content image folder: {exc}", "bad_request") from None
        unknown = sorted(set(options) - set(OPTION_FLAGS))
        if unknown:
            raise BrushworkError(f"unknown training options {unknown}; known: {sorted(OPTION_FLAGS)}", "bad_request")
        self.on_progress, self.on_done, self.on_error = on_progress, on_done, on_error
        if options.get("run_dir") is None:
            name = options.get("name") or "style"
            options = {**options, "run_dir": default_run_dir(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")}
        # the run dir holds the style image and the trainer's log too: nothing is left in /tmp when
        # the daemon dies, and what a resumed run needs stays together
        self.run_dir = Path(options["run_dir"])
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            style_path = _write_style_png(style, self.run_dir)
        except OSError as exc:
            raise BrushworkError(f"cannot write the training's files in {self.run_dir}: {exc.strerror or exc}",
                                 "io_error") from None
        self.command = [sys.executable, "-m", "trainer", "train", "style", "--style", str(style_path),
                        "--content", str(content_dir), "--progress-json"]
        if models_dir is not None:
            self.command += ["--out", str(models_dir)]
        for key, value in options.items():
            if isinstance(value, bool):  # a switch: present or not
                self.command += [OPTION_FLAGS[key]] if value else []
            elif value is not None:
                self.command += [OPTION_FLAGS[key], str(value)]
        self.process = None
        self.result = None
        self._cancelled = False
        self._reader = None

    def start(self):
        """Start the trainer process and the thread that reads its progress."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(PROJECT_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self._stderr = open(self.run_dir / "trainer.log", "ab")
        self._log_start = self._stderr.tell()   # a resumed run appends to the same log
        kwargs = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32"
                  else {"start_new_session": True})
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._stderr,
                                        stdin=subprocess.PIPE, cwd=PROJECT_ROOT, env=env, **kwargs)
        self._reader = threading.Thread(target=self._read, name="brushwork-train-job", daemon=True)
        self._reader.start()
        return self

    def _read(self):
        done = failure = None
        for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "progress" and self.on_progress:
                losses = event.get("losses", {})
                eta = event.get("eta_s")
                message = f"loss {losses.get('total', 0):.4g}" + (f", {eta / 60:.0f} min left" if eta else "")
                self.on_progress(event["iteration"], event["total"], message)
            elif event.get("event") == "done":
                done = {"name": event["model"], "path": event["path"]}
            elif event.get("event") == "error" and event.get("code") in ("io_error", "bad_request"):
                failure = BrushworkError(f"training failed: {event.get('message')}", event["code"])
            elif event.get("event") == "estimate" and "--estimate" in self.command:
                done = {"estimate": {k: v for k, v in event.items() if k != "event"}}
        returncode = self.process.wait()
        self._stderr.close()
        try:
            self.process.stdin.close()
        except OSError:
            pass
        if done is not None and returncode == 0:
            self.result = done
            if self.on_done:
                self.on_done(done)
        elif self.on_error:
            if self._cancelled:
                error = BrushworkError("training was cancelled", "cancelled")
            else:
                error = failure or BrushworkError(f"training failed (exit status {returncode}): "
                                                  f"{self.error_text()}", "internal")
            self.on_error(error)

    def error_text(self, lines=5):
        """The last lines of the trainer's stderr (progress bars left out)."""
        try:
            with open(self.run_dir / "trainer.log", "rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip() and "it/s" not in line
                and "s/it" not in line]
        return " | ".join(kept[-lines:])

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """End the training after the current iteration; the trainer still exports the model
        (its recipe says ``stopped_early``). False when the trainer is no longer running."""
        if not self.running:
            return False
        try:
            self.process.stdin.write(b"stop\n")
            self.process.stdin.flush()
        except (OSError, ValueError):   # it exited meanwhile (its stdin is closed)
            return False
        return True

    def cancel(self, grace=10.0):
        """Stop the trainer and its children: SIGTERM (it checkpoints), SIGKILL after ``grace`` s."""
        if not self.running:
            return
        self._cancelled = True
        if sys.platform == "win32":
            self.process.terminate()
        else:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            if sys.platform == "win32":
                self.process.kill()
            else:
                os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout=None):
        """Wait for the process and its callbacks; True when finished."""
        if self._reader is None:
            return True
        self._reader.join(timeout)
        return not self._reader.is_alive()
