"""The daemon's ``train_style`` jobs: each trains in its own process
(:class:`backend.daemon.trainer_process.TrainerProcess`), so training never occupies the compute
worker and the daemon keeps serving meanwhile. What a request may set, and to what, is
``protocol.TRAIN_OPTIONS``.

A request may name its own folder of content photos (``content``) when the daemon serves only
its own user (an IPC socket), and may ask for an ``estimate`` only: a few timed iterations on
the daemon's device instead of a training. The daemon's loop thread calls
:meth:`TrainingJobs.start`, :meth:`~TrainingJobs.cancel` and :meth:`~TrainingJobs.heartbeat`;
every message for a client goes through ``send(identity, header)``, which must be thread-safe
(the daemon queues them for its loop). See docs/protocol.md.
"""

import functools
import itertools
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backend import pixels, protocol
from backend.daemon.trainer_process import TrainerProcess
from backend.model_files import MAX_TEXT
from backend.nets import default_architecture, edge_hiding_border
from backend.protocol import TRAIN_OPTIONS, BrushworkError

log = logging.getLogger("brushwork.training")

MIN_STYLE_SIDE = TRAIN_OPTIONS["style_size"].low   # the trainer's smallest style image
CANCEL_GRACE_S = 10.0  # SIGTERM lets the trainer checkpoint; SIGKILL after this

# The options that set how long one iteration takes: an estimate is measured once per combination.
SPEED_OPTIONS = tuple(name for name, option in TRAIN_OPTIONS.items() if option.affects_speed)
ESTIMATE_ITERATIONS = 100   # the measuring trainer's --iterations: it stops as soon as it has timed a few
# What the editors' trainings use unless a request (or `brushwork serve`) says otherwise. Unless a
# request sets ``border``, the net also runs on its input mirrored out by its reach
# (edge_hiding_border: 60 pixels for 5 blocks), so that it cannot paint lines along the image's edge.
EDITOR_DEFAULTS = {name: option.editor_default for name, option in TRAIN_OPTIONS.items()
                   if option.editor_default is not None}
HEADER_FIELDS = {"v", "id", "kind", "width", "height", "format", "mask", "name", "display_name", "content",
                 "estimate"}


def training_options(header):
    """The trainer options of a ``train_style`` header, checked; raises BadRequest.

    ``name`` may be free text: it becomes a model name ('Blue Period' -> 'blue_period')
    and, unless ``display_name`` is given, the display name.
    """
    from trainer.export import model_name

    unknown = sorted(set(header) - HEADER_FIELDS - set(TRAIN_OPTIONS))
    if unknown:
        raise protocol.BadRequest(f"unknown train_style field(s) {unknown}; the training options are "
                                  f"{sorted(TRAIN_OPTIONS)}")
    text, display = header.get("name"), header.get("display_name")
    if not isinstance(text, str) or not text.strip():
        raise protocol.BadRequest("'name' (the new model's name) must be a non-empty string")
    if display is not None and not isinstance(display, str):
        raise protocol.BadRequest("'display_name' must be a string")
    try:
        name = model_name(text)
    except ValueError as exc:
        raise protocol.BadRequest(str(exc)) from None
    display = (display or "").strip() or (text.strip() if text.strip() != name else None)
    longest = MAX_TEXT["display_name"]   # what the model store accepts in a model's metadata
    if display is not None and (len(display) > longest or display.startswith("-")):
        raise protocol.BadRequest(f"the display name {display[:40]!r} must have at most {longest} characters "
                                  "and not start with '-'")
    options = {"name": name, "display_name": display}
    options.update((key, protocol.check_train_option(key, header[key]))
                   for key in TRAIN_OPTIONS if header.get(key) is not None)
    return {k: v for k, v in options.items() if v is not None}


def style_image(buffer, width, height, fmt):
    """The style pixels as an H x W x 3 uint8 sRGB array: cropped to the bounding box of the
    pixels that are not fully transparent, partly transparent ones composited on white."""
    rgb, alpha = pixels.decode(buffer, width, height, fmt)
    if alpha is not None:
        rows, cols = np.flatnonzero(alpha.max(axis=1) > 0), np.flatnonzero(alpha.max(axis=0) > 0)
        if not rows.size:
            raise protocol.BadPixels("the style image is fully transparent")
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        a = alpha[box][..., None]
        rgb = rgb[box] * a + (1.0 - a)
    if min(rgb.shape[:2]) < MIN_STYLE_SIDE:
        raise protocol.BadRequest(f"the style image (its non-transparent part) is {rgb.shape[1]}x{rgb.shape[0]} "
                                  f"pixels; at least {MIN_STYLE_SIDE}x{MIN_STYLE_SIDE} are needed")
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


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
    """One ``train_style`` request: who asked, its trainer process once started, its progress."""

    def __init__(self, identity, request_id, name, estimate=False):
        self.identity, self.id, self.name, self.estimate = identity, request_id, name, estimate
        self.done = self.total = 0
        self.message = "measuring the training speed" if estimate else "starting the trainer"
        self.job = None          # its TrainerProcess, once started
        self.cancelled = False
        self.stopping = False    # asked to stop early and keep the model
        self.thread = None       # decodes the style image and starts the trainer
        self.scratch = None      # an estimate's temporary folder, removed when it ends


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
        estimate = header.get("estimate", False)
        if not isinstance(estimate, bool):
            raise protocol.BadRequest(f"'estimate' must be true or false, got {estimate!r}")
        content = self._content(header.get("content"), needed=not estimate)
        if not estimate:
            self._check_name_free(options["name"])
        with self._lock:
            if self._closed:
                raise protocol.Unavailable("the daemon is shutting down")
            if not estimate and any(run.name == options["name"] and not run.estimate
                                    for run in self._runs.values()):
                raise protocol.Busy(f"the style {options['name']!r} is already being trained")
            measured = self._speeds.get(self._speed_key(options)) if estimate else None
            if measured is None and len(self._runs) >= self.limit:
                raise protocol.Busy(f"this daemon trains {self.limit} style(s) at a time and is busy; wait for "
                                    "the running training to finish or cancel it (brushwork serve --train-jobs)")
            run = TrainingRun(identity, header["id"], options["name"], estimate)
            if measured is None:
                self._runs[identity, run.id] = run
                self._progress(run)
        if measured is not None:
            target, args = self._reply_estimate, (run, options, content, measured)
        else:
            target, args = self._run, (run, (frames[0].buffer, header["width"], header["height"], header["format"]),
                                       options, content)
        run.thread = threading.Thread(target=target, args=args, daemon=True, name=f"brushwork-train-{run.id}")
        run.thread.start()

    def _full_options(self, options):
        """A request's options over the daemon's defaults over the editors' (EDITOR_DEFAULTS, border)."""
        options = {**EDITOR_DEFAULTS, **self.defaults, **options}
        blocks = options.get("blocks") or default_architecture("style")["blocks"]
        options.setdefault("border", edge_hiding_border(blocks))
        return options

    def _speed_key(self, options):
        return tuple(options.get(key) for key in SPEED_OPTIONS)

    def _content(self, folder, needed):
        """(the content folder a request trains on, what to call it in errors); raises BadRequest."""
        if folder is None:
            if needed and self.content_dir is None:
                raise protocol.BadRequest(
                    "this daemon has no content photos to train on: choose a folder of your photos in the editor "
                    "(when the daemon runs on this machine), or start the daemon with `brushwork serve --content "
                    "DIR` (or set BRUSHWORK_CONTENT) naming a folder of photos, e.g. a few hundred landscapes "
                    "and portraits")
            return self.content_dir, "the folder given to `brushwork serve --content DIR`"
        if not self.client_content:
            raise protocol.BadRequest(
                "this daemon does not read folders named by its clients (it listens on TCP, perhaps for other "
                "machines): it trains on the photos given to `brushwork serve --content DIR` where it runs")
        if not isinstance(folder, str) or not Path(folder).expanduser().is_absolute():
            raise protocol.BadRequest(f"'content' must be the absolute path of a folder of photos, got {folder!r}")
        return Path(folder).expanduser(), f"the chosen folder {folder}"

    def _check_name_free(self, name):
        """Refuse a name that a model outside ``out_dir`` already has (retraining one there replaces it)."""
        try:
            existing = self.store.get(name, refresh=False)   # the loop thread: never wait for a scan
        except BrushworkError:
            return
        if existing.json_path.parent.resolve() != self.out_dir:
            raise protocol.BadRequest(f"a model named {name!r} already exists in {existing.json_path.parent}; "
                                      "choose another name")

    def cancel(self, identity, request_id, keep=False):
        """Stop the training ``request_id`` of ``identity``; True if there was one. With ``keep``
        a running trainer stops after its current iteration and exports what it has learnt (the
        request then ends with its ``result``); without, or before it trains, nothing is kept."""
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
            if run.job is not None:
                run.job.cancel(CANCEL_GRACE_S)
                run.job.wait()

    # -- starter and trainer reader threads

    def _progress(self, run):
        self._send(run.identity, {"kind": "progress", "id": run.id, "done": run.done, "total": run.total,
                                  "message": run.message})

    def _finish(self, run, header):
        with self._lock:
            self._runs.pop((run.identity, run.id), None)
        if run.scratch is not None:
            shutil.rmtree(run.scratch, ignore_errors=True)
        self._send(run.identity, dict(header, id=run.id))

    def _fail(self, run, error):
        log.info("train_style %s failed: %s: %s", run.id, error.code, error.message)
        self._finish(run, {"kind": "error", "code": error.code, "message": error.message})

    def _photos(self, content):
        """How many photos ``content`` (folder, description) holds; raises BadRequest naming it."""
        from trainer.data import find_images

        folder, source = content
        if folder is None:
            return None
        try:
            return len(find_images(folder))
        except (OSError, ValueError) as exc:
            raise protocol.BadRequest(f"content image folder: {exc} ({source})") from None

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
                                      "estimate": self._estimate(options, measured, self._photos(content))})
        except BrushworkError as exc:
            self._send(run.identity, {"kind": "error", "id": run.id, "code": exc.code, "message": exc.message})

    def _run(self, run, image, options, content):
        """Make the run's folder and style image, then start its trainer (the starter thread)."""
        try:
            style = style_image(*image)
            del image  # the request's frames are no longer needed
            photos = self._photos(content)
            if run.cancelled:
                raise protocol.Cancelled("cancelled before training started")
            if run.estimate:   # time a few iterations on the style image itself: the speed needs no photos
                run_dir = content_dir = run.scratch = Path(tempfile.mkdtemp(prefix="brushwork-estimate-"))
                requested = options
                options = {**options, "iterations": ESTIMATE_ITERATIONS, "estimate": True}
                options.pop("time_limit", None)
                on_done = functools.partial(self._on_measured, run, requested=requested, photos=photos)
            else:   # the run dir keeps the style image and the trainer's log with its checkpoints
                run_dir, content_dir = new_run_dir(run.name), content[0]
                on_done = functools.partial(self._on_done, run)
            style_path = run_dir / "style.png"
            Image.fromarray(style).save(style_path)
            if self.device:
                options = {**options, "device": self.device}
            job = TrainerProcess(style_path, content_dir, run_dir, options, self.out_dir,
                                 on_progress=functools.partial(self._on_progress, run),
                                 on_done=on_done, on_error=functools.partial(self._fail, run))
            with self._lock:
                run.job = job.start()
                cancelled = run.cancelled
            log.info("train_style %s: training %r in process %d", run.id, run.name, job.process.pid)
            if cancelled:
                job.cancel(CANCEL_GRACE_S)
        except BrushworkError as exc:
            self._fail(run, exc)
        except OSError as exc:   # a full disk, say: the client hears which file
            self._fail(run, protocol.IOFailure(f"cannot write the training's files: {exc}"))
        except Exception:
            log.exception("internal error starting train_style %s", run.id)
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
        """The trainer exported the model: reply with the store's summary of it."""
        try:
            model = self.store.get(info["name"])
            if model.json_path.resolve() != Path(info["path"]).resolve():
                raise protocol.ModelError(f"the trained model was saved to {info['path']}, but the model "
                                          f"{model.json_path} of the same name takes precedence")
        except BrushworkError as exc:
            self._fail(run, protocol.ModelError(f"the trained model cannot be served: {exc.message}"))
            return
        log.info("train_style %s: model %s saved to %s", run.id, model.name, model.json_path)
        self._finish(run, {"kind": "result", "model": model.summary()})
