"""Run one blocking daemon call at a time in a worker thread, reporting back through Qt signals.

The work function runs off the GUI thread so Krita stays responsive; it must not touch
Krita. Signals are delivered in the GUI thread (queued), where results are applied.
"""

import threading

from .qt import QObject, pyqtSignal

from .brushwork_client import protocol


class JobRunner(QObject):
    progress = pyqtSignal(int, int, str)     # done, total, message
    failed = pyqtSignal(str, str)            # error code, human message
    busy_changed = pyqtSignal(bool)
    _finished = pyqtSignal(object, object, str, str)   # result, on_success, error code, error message

    def __init__(self, parent=None):
        super().__init__(parent)
        self.busy = False
        self._keep_if_cancelled = False
        self._cancel = threading.Event()
        self._finished.connect(self._on_finished)

    def start(self, work, on_success, keep_if_cancelled=False):
        """Run ``work(progress, should_cancel)`` in a thread; call ``on_success(result)`` in the GUI thread.

        A result that arrives after Cancel is dropped, unless ``keep_if_cancelled`` (a training: the
        daemon's reply tells what it saved before the cancel). Errors (from either) are emitted as
        ``failed``. Raises RuntimeError when a job is already running.
        """
        if self.busy:
            raise RuntimeError("a brushwork job is already running; wait for it or cancel it")
        self.busy = True
        self._keep_if_cancelled = keep_if_cancelled
        self._cancel.clear()
        self.busy_changed.emit(True)
        threading.Thread(target=self._run, args=(work, on_success), daemon=True, name="brushwork-job").start()

    def cancel(self):
        """Ask the running job to stop (the daemon is told; the document stays unchanged)."""
        self._cancel.set()

    @property
    def cancelled(self):
        """True once the running job was asked to stop."""
        return self._cancel.is_set()

    def _run(self, work, on_success):
        try:
            result = work(self._report, self._cancel.is_set)
        except protocol.BrushworkError as exc:
            self._finished.emit(None, on_success, exc.code, exc.message)
        except Exception as exc:  # a bug or an OS error: show it in the docker, never a traceback
            self._finished.emit(None, on_success, "internal", f"{type(exc).__name__}: {exc}")
        else:
            self._finished.emit(result, on_success, "", "")

    def _report(self, done, total, message=""):
        self.progress.emit(int(done), int(total), str(message))

    def _on_finished(self, result, on_success, code, message):
        if not code and self._cancel.is_set() and not self._keep_if_cancelled:   # do not apply it
            code, message = "cancelled", "cancelled"
        try:
            if code:
                self.failed.emit(code, message)
            else:
                on_success(result)
        except Exception as exc:
            self.failed.emit(getattr(exc, "code", "internal"), str(exc) or type(exc).__name__)
        finally:
            self.busy = False
            self.busy_changed.emit(False)
