"""The daemon's training jobs: ``train_style`` requests (a style from a style image, then, if
asked, its lite version) and ``distill`` requests (a lite version of an installed style). Each
phase trains in its own process (:class:`backend.daemon.trainer_process.TrainerProcess`), so
training never occupies the compute worker and the daemon keeps serving meanwhile. What a
request may set, and to what, is checked in :mod:`backend.daemon.training_requests`.

A request may name its own folder of content photos (``content``) when the daemon serves only
its own user (an IPC socket), and a ``train_style`` request may ask for an ``estimate`` only: a
few timed iterations on the daemon's device instead of a training. A style with ``lite`` is
followed by its distillation, in the same request: its progress says which phase runs, cancel
stops whichever does, and a style already saved stays when its lite version fails or is
cancelled (the result then has ``lite_error``). The daemon's loop thread calls
:meth:`TrainingJobs.start`, :meth:`~TrainingJobs.distill`, :meth:`~TrainingJobs.cancel` and
:meth:`~TrainingJobs.heartbeat`; every message for a client goes through ``send(identity,
header)``, which must be thread-safe (the daemon queues them for its loop). See docs/protocol.md.
"""

import functools
import itertools
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from backend import protocol
from backend.daemon.trainer_process import TrainerProcess
from backend.daemon.training_requests import (EDITOR_DEFAULTS, check_name_free, content_folder, count_photos,
                                              distill_options, distill_request, lite_options, style_image,
                                              training_options)
from backend.nets import default_architecture, edge_hiding_border
from backend.protocol import TRAIN_OPTIONS, BrushworkError

log = logging.getLogger("brushwork.training")

CANCEL_GRACE_S = 10.0  # SIGTERM lets the trainer checkpoint; SIGKILL after this

# The options that set how long one iteration takes: an estimate is measured once per combination.
SPEED_OPTIONS = tuple(name for name, option in TRAIN_OPTIONS.items() if option.affects_speed)
ESTIMATE_ITERATIONS = 100   # the measuring trainer's --iterations: it stops as soon as it has timed a few
STYLE, LITE = "style", "lite version"   # the phases' names in the progress of a style with a lite version


def new_run_dir(name):
    """A new, empty run dir for training ``name`` (checkpoints, previews, the style image)."""
    from trainer.loop import default_run_dir

    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in itertools.count(1):
        path = default_run_dir(stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


class TrainingRun:
    """One training request: who asked, the models it makes, its trainer process once started
    (the current phase's), its progress."""

    def __init__(self, identity, request_id, names, estimate=False, content=None, lite=None):
        self.identity, self.id, self.names, self.estimate = identity, request_id, names, estimate
        self.content = content   # the content folder it trains on
        self.lite = lite         # the distillation options to run after the style, or None
        self.style = None        # the style's summary, once saved (a style with a lite version)
        self.phase = STYLE if lite is not None else None   # named in the progress messages
        self.done = self.total = 0
        self.message = "measuring the training speed" if estimate else "starting the trainer"
        self.job = None          # its current TrainerProcess, once started
        self.cancelled = False
        self.stopping = False    # asked to stop early and keep the model
        self.thread = None       # decodes the style image and starts the trainer
        self.scratch = None      # an estimate's temporary folder, removed when it ends
        self.finished = threading.Event()   # its final reply is sent


class TrainingJobs:
    """The daemon's training jobs: at most ``limit`` at a time (estimates included), models exported
    to ``out_dir`` (default: the user models dir, which must be one of ``store``'s dirs). With
    ``client_content`` a request may name its own content folder (only for a daemon that serves
    nobody but its own user: a folder named by someone else could be any the daemon can read).
    Thread-safe."""

    def __init__(self, store, send, content_dir=None, out_dir=None, limit=1, device=None, defaults=None,
                 client_content=False):
        from backend.model_store import user_models_dir

        self.store = store
        self.content_dir = Path(content_dir).expanduser().resolve() if content_dir else None
        self.out_dir = Path(out_dir or user_models_dir()).expanduser().resolve()
        if self.content_dir and self.out_dir not in [Path(d).resolve() for d in store.dirs]:
            raise protocol.BadRequest(f"the training output dir {self.out_dir} is not one of the model dirs "
                                      f"the daemon serves ({', '.join(map(str, store.dirs))})")
        if int(limit) < 1:
            raise protocol.BadRequest(f"the training job limit must be at least 1, got {limit}")
        self.limit = int(limit)
        self.device = device
        self.client_content = bool(client_content)
        self.defaults = {key: protocol.check_train_option(key, value) for key, value in (defaults or {}).items()}
        self._send = send
        self._runs = {}          # (identity, request id) -> TrainingRun
        self._speeds = {}        # SPEED_OPTIONS values -> the measured estimate event
        self._lock = threading.Lock()
        self._closed = False

    # -- loop thread

    def describe(self):
        """What ``info`` says about training: whether the daemon has content photos of its own,
        whether a request may name a folder, and the iterations a request gets unless it says."""
        return {"content": self.content_dir is not None, "client_content": self.client_content,
                "iterations": {**EDITOR_DEFAULTS, **self.defaults}["iterations"]}

    def start(self, identity, header, frames):
        """Check a train_style request (its image already checked) and start it; raise the fitting error."""
        options = self._full_options(training_options(header))
        lite = lite_options(header, options["name"])
        estimate = header.get("estimate", False)
        if not isinstance(estimate, bool):
            raise protocol.BadRequest(f"'estimate' must be true or false, got {estimate!r}")
        if estimate:
            lite = None
        if lite is not None:
            lite = distill_options(lite)
        content = content_folder(header.get("content"), not estimate, self.content_dir, self.client_content)
        names = [options["name"]] + ([lite["name"]] if lite else [])
        if not estimate:
            for name in names:
                check_name_free(self.store, self.out_dir, name)
        with self._lock:
            measured = self._speeds.get(self._speed_key(options)) if estimate else None
            self._check_room(names, estimate, limited=measured is None)
            run = TrainingRun(identity, header["id"], names, estimate, content, lite)
            if measured is None:
                self._runs[identity, run.id] = run
                self._progress(run)
        if measured is not None:
            target, args = self._reply_estimate, (run, options, content, measured)
        else:
            target, args = self._run, (run, (frames[0].buffer, header["width"], header["height"], header["format"]),
                                       options)
        run.thread = threading.Thread(target=target, args=args, daemon=True, name=f"brushwork-train-{run.id}")
        run.thread.start()

    def distill(self, identity, header):
        """Check a distill request (it has no pixels) and start it; raise the fitting error."""
        teacher, options = distill_request(header, self.store)
        options = distill_options(options)
        content = content_folder(header.get("content"), True, self.content_dir, self.client_content)
        check_name_free(self.store, self.out_dir, options["name"])
        with self._lock:
            self._check_room([options["name"]], estimate=False, limited=True)
            run = TrainingRun(identity, header["id"], [options["name"]], content=content)
            run.phase = LITE
            self._runs[identity, run.id] = run
            self._progress(run)
        run.thread = threading.Thread(target=self._start_distillation, args=(run, teacher.name,
                                                                              teacher.json_path.parent, options),
                                      daemon=True, name=f"brushwork-distill-{run.id}")
        run.thread.start()

    def _check_room(self, names, estimate, limited):
        """Refuse a training while the daemon closes or makes one of ``names`` already, and one that
        would start a trainer (``limited``) while the daemon trains as many as it may."""
        if self._closed:
            raise protocol.Unavailable("the daemon is shutting down")
        for name in [] if estimate else names:
            if any(name in run.names and not run.estimate for run in self._runs.values()):
                raise protocol.Busy(f"the style {name!r} is already being trained")
        if limited and len(self._runs) >= self.limit:
            raise protocol.Busy(f"this daemon trains {self.limit} style(s) at a time and is busy; wait for "
                                "the running training to finish or cancel it (brushwork serve --train-jobs)")

    def _full_options(self, options):
        """A request's options over the daemon's defaults over the editors' (EDITOR_DEFAULTS, border)."""
        options = {**EDITOR_DEFAULTS, **self.defaults, **options}
        blocks = options.get("blocks") or default_architecture("style")["blocks"]
        options.setdefault("border", edge_hiding_border(blocks))
        return options

    def _speed_key(self, options):
        return tuple(options.get(key) for key in SPEED_OPTIONS)

    def cancel(self, identity, request_id, keep=False):
        """Stop the training ``request_id`` of ``identity``; True if there was one. With ``keep``
        a running trainer stops after its current iteration and exports what it has learnt (the
        request then ends with its ``result``; a style's lite version is then not made); without,
        or before it trains, nothing more is kept (a style saved before its lite version stays)."""
        with self._lock:
            run = self._runs.get((identity, request_id))
            if run is None:
                return False
            job = run.job
            if keep and job is not None and not run.estimate and not run.cancelled:
                run.stopping, run.message = True, "stopping: saving the model with what it has learnt"
                self._progress(run)
                job.stop()
                return True
            run.cancelled, run.message = True, "cancelling"
        if job is not None:  # cancelling waits for the trainer to checkpoint: not in the loop thread
            threading.Thread(target=job.cancel, args=(CANCEL_GRACE_S,), daemon=True).start()
        return True

    def heartbeat(self):
        """Re-send every training's latest progress (keeps its client waiting)."""
        with self._lock:
            for run in self._runs.values():
                self._progress(run)

    def close(self):
        """Cancel every training, wait for the trainers to exit and for their final replies."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
            for run in runs:
                run.cancelled = True
        for run in runs:
            run.thread.join()
            while not run.finished.is_set():   # the phase running now, whichever it is
                job = run.job
                if job is None:
                    run.finished.wait(0.1)
                    continue
                job.cancel(CANCEL_GRACE_S)
                job.wait(1.0)

    # -- starter and trainer reader threads

    def _progress(self, run):
        message = f"{run.phase}: {run.message}" if run.phase else run.message
        self._send(run.identity, {"kind": "progress", "id": run.id, "done": run.done, "total": run.total,
                                  "message": message})

    def _finish(self, run, header):
        with self._lock:
            self._runs.pop((run.identity, run.id), None)
        if run.scratch is not None:
            shutil.rmtree(run.scratch, ignore_errors=True)
        self._send(run.identity, dict(header, id=run.id))
        run.finished.set()

    def _fail(self, run, error):
        """End the request with ``error``, or, once its style is saved, with the style and ``lite_error``."""
        log.info("training %s failed: %s: %s", run.id, error.code, error.message)
        if run.style is not None:
            self._finish(run, {"kind": "result", "model": self._latest(run.style),
                               "lite_error": {"code": error.code, "message": error.message}})
        else:
            self._finish(run, {"kind": "error", "code": error.code, "message": error.message})

    def _estimate(self, options, measured, photos):
        """The ``estimate`` of a result: the measured speed, times the request's iterations."""
        s = measured["s_per_iteration"]
        seconds = options["iterations"] * s if "iterations" in options else None
        if seconds is not None and options.get("time_limit"):
            seconds = min(seconds, options["time_limit"])
        return {"s_per_iteration": s, "iterations": options.get("iterations"), "seconds": seconds,
                "hardware": measured.get("hardware"), "photos": photos}

    def _reply_estimate(self, run, options, content, measured):
        """Answer an estimate from an earlier measurement (after checking the content folder)."""
        try:
            self._send(run.identity, {"kind": "result", "id": run.id,
                                      "estimate": self._estimate(options, measured, count_photos(content))})
        except BrushworkError as exc:
            self._send(run.identity, {"kind": "error", "id": run.id, "code": exc.code, "message": exc.message})

    def _run(self, run, image, options):
        """Make the run's folder and style image, then start its trainer (the starter thread)."""
        try:
            style = style_image(*image)
            del image  # the request's frames are no longer needed
            photos = count_photos(run.content)
            if run.cancelled:
                raise protocol.Cancelled("cancelled before training started")
            if run.estimate:   # time a few iterations on the style image itself: the speed needs no photos
                run_dir = content_dir = run.scratch = Path(tempfile.mkdtemp(prefix="brushwork-estimate-"))
                requested = options
                options = {**options, "iterations": ESTIMATE_ITERATIONS, "estimate": True}
                options.pop("time_limit", None)
                on_done = functools.partial(self._on_measured, run, requested=requested, photos=photos)
            else:   # the run dir keeps the style image and the trainer's log with its checkpoints
                run_dir, content_dir = new_run_dir(run.names[0]), run.content[0]
                on_done = functools.partial(self._on_done, run)
            style_path = run_dir / "style.png"
            Image.fromarray(style).save(style_path)
            self._launch(run, "style", run_dir, {"style": style_path, "content": content_dir, **options}, on_done)
        except Exception as exc:
            self._failed_to_start(run, exc)

    def _start_distillation(self, run, teacher, teacher_dir, options):
        """Start the trainer distilling ``teacher`` (in ``teacher_dir``) into ``options["name"]``."""
        try:
            count_photos(run.content)
            if run.cancelled:
                raise protocol.Cancelled("cancelled before the distillation started")
            run_dir = new_run_dir(options["name"])
            self._launch(run, "distill", run_dir, {"teacher": teacher, "models": teacher_dir,
                                                   "content": run.content[0], **options},
                         functools.partial(self._on_done, run))
        except Exception as exc:
            self._failed_to_start(run, exc)

    def _launch(self, run, command, run_dir, options, on_done):
        if self.device:
            options = {**options, "device": self.device}
        job = TrainerProcess(command, run_dir, options, self.out_dir,
                             on_progress=functools.partial(self._on_progress, run),
                             on_done=on_done, on_error=functools.partial(self._fail, run))
        with self._lock:
            run.job = job.start()
            cancelled, stopping = run.cancelled, run.stopping
        log.info("training %s: %s %r in process %d", run.id, command, options["name"], job.process.pid)
        if cancelled:
            job.cancel(CANCEL_GRACE_S)
        elif stopping:   # asked while the previous phase's trainer exported: it stops after its first step
            job.stop()

    def _failed_to_start(self, run, exc):
        if isinstance(exc, BrushworkError):
            self._fail(run, exc)
        elif isinstance(exc, OSError):   # a full disk, say: the client hears which file
            self._fail(run, protocol.IOFailure(f"cannot write the training's files: {exc}"))
        else:
            log.exception("internal error starting training %s", run.id)
            self._fail(run, protocol.InternalError())

    def _on_progress(self, run, done, total, message):
        with self._lock:
            if run.estimate:   # its iterations are only timed: no progress to show but the waiting
                self._progress(run)
            elif not run.cancelled:
                run.done, run.total = int(done), int(total)
                run.message = run.message if run.stopping else message
                self._progress(run)

    def _on_measured(self, run, info, requested, photos):
        """The measuring trainer timed its iterations: remember the speed and reply with the estimate."""
        measured = info["estimate"]
        with self._lock:
            self._speeds[self._speed_key(requested)] = measured
        self._finish(run, {"kind": "result", "estimate": self._estimate(requested, measured, photos)})

    def _on_done(self, run, info):
        """A trainer exported its model: start the style's lite version, or reply with the store's
        summary of the model (a style and its lite version: both)."""
        try:
            model = self.store.get(info["name"])
            if model.json_path.resolve() != Path(info["path"]).resolve():
                raise protocol.ModelError(f"the trained model was saved to {info['path']}, but the model "
                                          f"{model.json_path} of the same name takes precedence")
        except BrushworkError as exc:
            self._fail(run, protocol.ModelError(f"the trained model cannot be served: {exc.message}"))
            return
        log.info("training %s: model %s saved to %s", run.id, model.name, model.json_path)
        if run.lite is not None and run.style is None:
            run.style = model.summary()
            self._start_lite(run, model.json_path.parent)
        elif run.style is not None:
            self._finish(run, {"kind": "result", "model": self._latest(run.style), "lite_model": model.summary()})
        else:
            self._finish(run, {"kind": "result", "model": model.summary()})

    def _start_lite(self, run, style_dir):
        """The style is saved in ``style_dir``: distil its lite version, unless the request was stopped
        or cancelled meanwhile."""
        with self._lock:
            if run.cancelled or run.stopping:
                why = "stopped early" if run.stopping else "cancelled"
                error = protocol.Cancelled(f"the lite version was not made: the training was {why}")
            else:
                error = None
                run.phase, run.done, run.total, run.message = LITE, 0, 0, "starting the trainer"
                self._progress(run)
        if error is not None:
            self._fail(run, error)
        else:
            self._start_distillation(run, run.style["name"], style_dir, run.lite)

    def _latest(self, summary):
        """The store's summary of the model ``summary`` describes, read again (it may list its lite version now)."""
        try:
            return self.store.get(summary["name"]).summary()
        except BrushworkError:
            return summary
