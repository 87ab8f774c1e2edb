"""What the actions and the docker do: capture pixels, run the daemon call in the worker, write back.

Krita is reached only through ``host`` (the ``krita_host`` module in Krita). The document is
changed only after the complete result arrived and was checked, in the GUI thread, so an
error or a cancel leaves it untouched. Every outcome is reported through the signals; the
docker shows them (never a traceback). Messages belong to the document their job worked on:
the docker shows the active document's latest one, and a later success replaces an error.
"""

import dataclasses
import os
import threading

from .qt import QObject, QTimer, pyqtSignal

from . import settings as settings_io
from .brushwork_client.managed_daemon import read_recorded_executable
from .connection import Connection
from .jobs import JobRunner
from .pixels import UnsupportedImage, mask_as_alpha
from .styles import draft_model, lite_command, result_layer_name, training_note

DAEMON_WATCH_MS = 1000   # how often an idle docker checks that the daemon it started still runs


class Controller(QObject):
    connection_changed = pyqtSignal(bool, str)   # connected, human description
    models_changed = pyqtSignal(list)            # info()["models"] (with thumbnail_png when present)
    progress = pyqtSignal(int, int, str)
    status_changed = pyqtSignal(str, bool)       # the shown document's latest message, is it an error
    busy_changed = pyqtSignal(bool)
    cancelling = pyqtSignal()                    # Cancel was pressed; the job stops at its next tile
    training_changed = pyqtSignal(bool)          # a training runs (the Train button then stops it)

    def __init__(self, host, settings_path, install_record_path=None, parent=None):
        super().__init__(parent)
        self.host = host
        self.settings_path = settings_path
        self.settings = settings_io.load(settings_path)
        self.models = []
        self.last_error = ""
        self.connection_state = (False, "not connected")
        self.statuses = {}          # document key (None: no document) -> (message, is error)
        self.shown_document = None  # the key of the document the docker shows
        self._job_document = None
        self.training = False       # a training runs: the Train button stops it
        self._stop_training = threading.Event()
        self.train_dialog = None
        log_path = os.path.join(os.path.dirname(settings_path), "daemon.log")
        self.connection = Connection(self.settings, read_recorded_executable(install_record_path), log_path)
        self.runner = JobRunner(self)
        self.runner.progress.connect(self.progress)
        self.runner.failed.connect(self._on_failed)
        self.runner.busy_changed.connect(self.busy_changed)
        self.runner.busy_changed.connect(lambda busy: busy or self.connection.reconfigure(self.settings))
        self.runner.busy_changed.connect(self._training_ended)
        self.watch = QTimer(self)
        self.watch.timeout.connect(self._watch_daemon)
        self.watch.start(DAEMON_WATCH_MS)

    @property
    def busy(self):
        return self.runner.busy

    # ---- settings and connection -------------------------------------------------------

    def update_settings(self, **changes):
        """Change some settings, save them, and use them from the next job on."""
        values = {**dataclasses.asdict(self.settings), **changes}
        self.settings = settings_io.from_dict(values)
        settings_io.save(self.settings, self.settings_path)
        if not self.runner.busy:
            self.connection.reconfigure(self.settings)

    def refresh(self, start_daemon=True):
        """Connect (starting the managed daemon if allowed) and fetch the model list with thumbnails."""
        def work(progress, should_cancel):
            client = self.connection.client(lambda text: progress(0, 0, text), should_cancel, start=start_daemon)
            return client.info(thumbnails=True)
        self._start(work, self._on_info)

    def _on_info(self, info):
        self.models = list(info.get("models", []))
        self._connected(f"connected to brushwork {info.get('version', '?')} at {self.connection.endpoint} "
                        f"({info.get('device', '?')}, {info.get('precision', '?')})")
        self.models_changed.emit(self.models)

    def _connected(self, description=None):
        """The daemon just answered: show the connection as up (keeping its description when known)."""
        if description is None:
            connected, description = self.connection_state
            if connected:
                return
            description = f"connected to {self.connection.endpoint}"
        self.connection_state = (True, description)
        self.connection_changed.emit(True, description)

    def _disconnected(self, reason):
        self.connection_state = (False, reason)
        self.connection_changed.emit(False, reason)

    def _watch_daemon(self):
        """Between jobs, notice that the daemon this plug-in started has died."""
        gone = self.connection.daemon_exit_message()
        if gone and self.connection_state[0] and not self.runner.busy:
            self._disconnected(gone)

    # ---- messages per document ------------------------------------------------------------

    @property
    def shown_status(self):
        """(message, is error) of the document the docker shows."""
        return self.statuses.get(self.shown_document, ("", False))

    def show_document(self, key):
        """The active document changed (``key`` from ``host.document_key``, None: none open)."""
        self.shown_document = key
        self.status_changed.emit(*self.shown_status)

    def _report(self, text, error, document=None):
        key = self.host.document_key(document) if document is not None else self.shown_document
        self.statuses[key] = (text, error)
        if error:
            self.last_error = text
        if key == self.shown_document:
            self.status_changed.emit(text, error)

    def shutdown(self):
        """Krita is quitting: cancel a running job and stop the daemon we started."""
        self.runner.cancel()
        self.connection.stop_daemon()

    def cancel(self):
        """Cancel the running job (the document stays unchanged): the daemon stops at its next tile."""
        if self.runner.busy and not self.runner.cancelled:
            self.runner.cancel()
            self.cancelling.emit()

    # ---- actions ----------------------------------------------------------------------------

    def stylize(self):
        """Stylize the active layer (inside the selection, if any) with the chosen style: with Draft on,
        through its lite net when it has one."""
        s = self.settings
        if not s.style:
            self._report_error("choose a style in the brushwork docker first")
            return
        snapshot = self._capture(self.host.snapshot_active_layer)
        if snapshot is None:
            return
        region = snapshot.region
        # a new layer carries a soft selection as its alpha; a replaced layer gets the blend baked in
        mask_as_layer_alpha = s.output != "replace" and snapshot.mask is not None

        def work(progress, should_cancel):
            client = self._client(progress, should_cancel)
            model = draft_model(client.info()["models"], s.style) if s.draft else None
            result = client.stylize(snapshot.pixels, region.width, region.height, snapshot.format, model or s.style,
                                    strength=s.strength, preserve_colors=s.preserve_colors,
                                    mask=None if mask_as_layer_alpha else snapshot.mask,
                                    progress=progress, should_cancel=should_cancel)
            result.check(region.width, region.height, snapshot.format)   # before the document changes
            if mask_as_layer_alpha:
                return model, mask_as_alpha(result.pixels, snapshot.format, snapshot.mask)
            return model, result.pixels

        def apply(outcome):
            model, pixels = outcome
            label = self._model_label(s.style)
            source = snapshot.node.name()
            if s.output == "replace":
                self.host.replace_layer_pixels(snapshot, pixels)
                where = f"layer {source!r}"
            else:
                name = result_layer_name(source, label, [self._model_label(m["name"]) for m in self.models],
                                         draft=model is not None)
                self.host.add_layer_above(snapshot, pixels, name)
                where = f"the new layer {name!r}; {source!r} stays the active layer"
            if model is not None:
                label += f" (draft: its lite net {model})" if model != s.style else " (a lite net)"
            elif s.draft:
                label += f" (no draft: it has no lite net; make one with {lite_command(s.style)})"
            return f"stylized {region.width}x{region.height} px of {source!r} with {label} into {where}"
        self._run_job(work, apply, snapshot.document)

    def upscale(self):
        """Open the image scaled by the chosen factor as a new document, the paint layers (all, or the
        active one) run through the SR net; the image itself stays as it is."""
        s = self.settings
        snapshots = self._capture(self.host.snapshot_layers, s.upscale_layers == "active")
        if snapshots is None:
            return
        factor = s.upscale_factor

        def work(progress, should_cancel):
            client = self._client(progress, should_cancel)
            results = []
            for index, snap in enumerate(snapshots):
                label = f"layer {index + 1} of {len(snapshots)}"
                progress(0, 0, label)
                result = client.upscale(snap.pixels, snap.region.width, snap.region.height, snap.format,
                                        scale=factor, progress=lambda d, t, m: progress(d, t, f"{label}: {m}"),
                                        should_cancel=should_cancel)
                result.check(snap.region.width * factor, snap.region.height * factor, snap.format)
                results.append(result.pixels)
            return results

        def apply(results):
            result = self.host.upscale_into_new_document(snapshots, results, factor)
            source = self.host.document_title(snapshots[0].document)
            text = (f"upscaled x{factor} ({len(snapshots)} layer(s) through the network) into the new image "
                    f"{result.name()!r}, {result.width()}x{result.height()} px; {source!r} is unchanged")
            self._report(text, False, result)   # the new image is the one shown now
            return text
        self._run_job(work, apply, snapshots[0].document)

    def train_style(self):
        """Train a new style from the selected part of the image: the Train dialog asks for the
        photos and iterations and shows the measured time first. During a training: stop it early
        and keep what it has learnt."""
        if self.training:
            self.stop_training()
            return
        snapshot = self._capture(self.host.snapshot_selection)
        if snapshot is None:
            return
        from .train_dialog import TrainDialog
        self.train_dialog = TrainDialog(self, snapshot, self.host.main_window())
        self.train_dialog.open()

    def estimate_training(self, snapshot, name, options, on_estimate):
        """Ask the daemon what it trains on and how long ``options`` take on its device;
        ``on_estimate((info()["training"], estimate))`` in the GUI thread."""
        region = snapshot.region

        def work(progress, should_cancel):
            client = self._client(progress, should_cancel)
            training = client.info().get("training") or {}
            estimate = client.estimate_training(snapshot.pixels, region.width, region.height, snapshot.format, name,
                                                progress=progress, should_cancel=should_cancel, **options)
            return training, estimate
        self._start(work, on_estimate, snapshot.document)

    def start_training(self, snapshot, name, options):
        """Train the style ``name`` from ``snapshot`` on the daemon (with option ``lite``, then its
        lite version: ``Client.train_style_and_lite``); the results join the gallery."""
        region = snapshot.region

        def call(client, progress, should_cancel):
            arguments = (snapshot.pixels, region.width, region.height, snapshot.format, name)
            keywords = dict(options, progress=progress, should_cancel=should_cancel,
                            should_stop=self._stop_training.is_set)
            if options.get("lite"):
                return client.train_style_and_lite(*arguments, **keywords)
            return client.train_style(*arguments, **keywords), None, None

        def describe(outcome):   # after the gallery's refresh: it knows the new models' display names
            style, lite, lite_error = outcome
            text = f"trained the style {self._model_label(style['name'])!r}{training_note(style)}"
            if lite is not None:
                return (f"{text} and its lite version {self._model_label(lite['name'])!r}{training_note(lite)}: "
                        "both are in the style gallery now")
            return text + ": it is in the style gallery now" + (
                f"; its lite version was not made ({lite_error})" if lite_error is not None else "")
        self._train(call, describe, snapshot.document)

    def make_lite_version(self, document, teacher, options):
        """Distil a lite (fast) version of the installed style ``teacher`` on the daemon
        (``options``: content and distillation options); it joins the gallery."""
        self._train(lambda client, progress, should_cancel: client.distill(
                        teacher, progress=progress, should_cancel=should_cancel,
                        should_stop=self._stop_training.is_set, **options),
                    lambda lite: f"made {self._model_label(lite['name'])!r}{training_note(lite)}, the lite version of "
                                 f"{self._model_label(teacher)!r}: it is in the style gallery now", document)

    def _train(self, call, describe, document):
        """Run ``call(client, progress, should_cancel)``, a training, as the job that the Train
        button stops; then refresh the gallery and report ``describe(its result)``, also after a
        Cancel that the daemon answered with a result (a style saved before its lite version)."""
        self._stop_training.clear()

        def work(progress, should_cancel):
            client = self._client(progress, should_cancel)
            outcome = call(client, lambda done, total, text: progress(done, total, f"training: {text}"),
                           should_cancel)
            return outcome, client.info(thumbnails=True)

        def apply(result):
            outcome, info = result
            self._on_info(info)
            return describe(outcome)
        self._start(work, apply, document, keep_if_cancelled=True)
        if self.runner.busy:
            self.training = True
            self.training_changed.emit(True)

    def stop_training(self):
        """End the running training after its current iteration; the model keeps what it learnt."""
        if self.training and not self._stop_training.is_set():
            self._stop_training.set()
            self.progress.emit(0, 0, "stopping the training: saving what it has learnt…")

    # ---- plumbing ---------------------------------------------------------------------------

    def _training_ended(self, busy):
        if not busy and self.training:
            self.training = False
            self.training_changed.emit(False)

    def _client(self, progress, should_cancel):
        return self.connection.client(lambda text: progress(0, 0, text), should_cancel)

    def _capture(self, function, *args):
        if self.runner.busy:
            self._report_error("brushwork is busy: wait for the running job or cancel it")
            return None
        try:
            return function(*args)
        except UnsupportedImage as exc:
            self._report_error(str(exc))
            return None

    def _run_job(self, work, apply, document):
        """Start an action's job; when the model list is still unknown, fetch it on the same connection."""
        need_info = not self.models

        def run(progress, should_cancel):
            result = work(progress, should_cancel)
            return result, (self._client(progress, should_cancel).info(thumbnails=True) if need_info else None)

        def finish(outcome):
            result, info = outcome
            if info is not None:
                self._on_info(info)
            return apply(result)
        self._start(run, finish, document)

    def _start(self, work, on_success, document=None, keep_if_cancelled=False):
        """Run ``work`` in the worker; ``on_success(result)`` returns the message to show (or None);
        ``keep_if_cancelled``: as :meth:`JobRunner.start`."""
        def succeeded(result):
            self._connected()
            text = on_success(result)
            self.last_error = ""
            self._report(text or "", False, document)
        self.last_error = ""
        self._job_document = document
        try:
            self.runner.start(work, succeeded, keep_if_cancelled)
        except RuntimeError as exc:
            self._report_error(str(exc))

    def _on_failed(self, code, message):
        if code == "cancelled":
            message = "cancelled: the image was not changed"
        elif code in ("unavailable", "timeout"):
            self._disconnected(message)
        elif code == "unknown_kind":
            message = f"this brushwork daemon cannot do that yet ({message})"
        self._report_error(message, self._job_document)

    def _report_error(self, message, document=None):
        self._report(message, True, document)

    def _model_label(self, name):
        for model in self.models:
            if model.get("name") == name:
                return model.get("display_name") or name
        return name
