"""One training in its own process: ``python -m trainer train style|distill --progress-json``,
so the daemon keeps serving, its JSON progress lines turned into callbacks.

    job = TrainerProcess("style", run_dir, {"style": run_dir / "style.png", "content": content_dir,
                         "name": "my_style", "iterations": 2000}, models_dir, on_progress, on_done, on_error)
    job.start()
    ...
    job.cancel()        # terminates the trainer and its children

``command`` is ``style`` (options ``style`` and ``content``: the inputs) or ``distill`` (options
``teacher``, ``models``, the teacher's folder, and ``content``). The caller makes ``run_dir``
(and the style image; :mod:`backend.daemon.training`); the trainer writes its checkpoints and
its log (``trainer.log``) there too, so nothing is left in /tmp when the daemon dies, and what
a resumed run needs stays together. ``options`` are training options (``protocol.TRAIN_OPTIONS``
or ``protocol.DISTILL_OPTIONS``, checked by the caller) and the settings the daemon chooses
itself (DAEMON_SETTINGS). ``on_progress(done, total, message)`` (for a distillation first the
teacher's targets made, then the iterations; with option ``recipe`` "two-step" those of each part,
the message beginning "part 2 of 7: "), ``on_done(info)`` with info ``{"name", "path"}``
(with option ``estimate``: ``{"estimate": {"s_per_iteration", "hardware", ...}}``, and no
model), ``on_error(BrushworkError)`` (code ``cancelled`` after :meth:`cancel`) are called from
the job's reader thread. :meth:`stop` ends the training early and still exports the model.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from backend import protocol
from backend.protocol import DISTILL_OPTIONS, TRAIN_OPTIONS, BrushworkError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

COMMANDS = ("style", "distill")   # the trainer's `train` commands a daemon runs
# trainer flags the daemon (or a test) sets itself, besides the training options a request sets
DAEMON_SETTINGS = {"name": "--name", "display_name": "--display-name", "device": "--device",
                   "precision": "--precision", "vgg_weights": "--vgg-weights", "estimate": "--estimate",
                   "style": "--style", "content": "--content", "teacher": "--teacher", "models": "--models"}
FLAGS = {**{name: option.flag for name, option in {**TRAIN_OPTIONS, **DISTILL_OPTIONS}.items()}, **DAEMON_SETTINGS}


def trainer_arguments(options):
    """``options`` as ``train style`` / ``train distill`` arguments: a switch is present or not,
    None is left out."""
    arguments = []
    for key, value in options.items():
        flag = FLAGS.get(key)
        if flag is None:
            raise ValueError(f"unknown training option {key!r}; known: {sorted(FLAGS)}")
        if isinstance(value, bool):
            arguments += [flag] if value else []
        elif value is not None:
            arguments += [flag, str(value)]
    return arguments


class TrainerProcess:
    """One ``train style`` or ``train distill`` run in a child process (see the module docstring)."""

    def __init__(self, command, run_dir, options, models_dir=None, on_progress=None, on_done=None, on_error=None):
        if command not in COMMANDS:
            raise ValueError(f"unknown trainer command {command!r}; known: {COMMANDS}")
        self.on_progress, self.on_done, self.on_error = on_progress, on_done, on_error
        self.run_dir = Path(run_dir)
        self.command = [sys.executable, "-m", "trainer", "train", command, "--run-dir", str(run_dir),
                        "--progress-json", *trainer_arguments(options)]
        if models_dir is not None:
            self.command += ["--out", str(models_dir)]
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
        part = ""      # "part 2 of 7: " while a two-step distillation runs its second part
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
                message = part + f"loss {losses.get('total', 0):.4g}" + (f", {eta / 60:.0f} min left" if eta else "")
                self.on_progress(event["iteration"], event["total"], message)
            elif event.get("event") == "targets" and self.on_progress:
                self.on_progress(event["done"], event["total"],
                                 f"the teacher's examples: {event['done']:,} of {event['total']:,}")
            elif event.get("event") == "part":
                part = f"part {event['number']} of {event['parts']}: "
            elif event.get("event") == "done":
                done = {"name": event["model"], "path": event["path"]}
            elif event.get("event") == "error" and event.get("code") in (protocol.IOFailure.code,
                                                                          protocol.BadRequest.code):
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
                error = protocol.Cancelled("training was cancelled")
            else:
                error = failure or protocol.InternalError(f"training failed (exit status {returncode}): "
                                                          f"{self.error_text()}")
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
