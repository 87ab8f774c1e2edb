"""Test-only Krita plug-in: once the main window exists, run the script in $BRUSHWORK_KRITA_SCRIPT.

The script gets ``app`` (Krita.instance()), ``out`` (the output folder, $BRUSHWORK_KRITA_OUT),
``after(ms, fn)`` and ``finish()``; it must call ``finish()`` when done (directly or later from
a Qt callback). A script error is written to ``out/driver_error.txt`` and Krita quits.
"""

import faulthandler
import os
import threading
import traceback
from importlib import import_module

from krita import Krita

# Krita's own Qt binding, as plugin_krita/brushwork/qt.py chooses it: PyQt5 in Krita 5, PyQt6 in Krita 6
QTimer = import_module(next(base for base in Krita.__mro__ if base.__name__ == "QObject").__module__).QTimer

TIME_LIMIT_MS = 180_000
QUIT_GRACE_S = 20   # Krita 5.1 under Xvfb sometimes hangs while quitting; then exit hard


def _out(name):
    return os.path.join(os.environ["BRUSHWORK_KRITA_OUT"], name)


def finish():
    """Close every document without saving and quit Krita (hard exit if quitting hangs)."""
    timer = threading.Timer(QUIT_GRACE_S, _exit_hard)
    timer.daemon = True
    timer.start()
    app = Krita.instance()
    for doc in app.documents():
        doc.setModified(False)
        doc.close()
    app.action("file_quit").trigger()


def _exit_hard():
    with open(_out("quit_forced.txt"), "w", encoding="utf-8") as f:
        f.write(f"Krita had not quit {QUIT_GRACE_S} s after file_quit\n")
    os._exit(0)


def fail(message):
    """Record a driver failure for the test and quit."""
    with open(_out("driver_error.txt"), "a", encoding="utf-8") as f:
        f.write(message + "\n")
    finish()


def guarded(fn):
    """``fn`` wrapped so that an exception fails the run instead of vanishing into Krita's log."""
    def run(*args):
        try:
            fn(*args)
        except Exception:
            fail(traceback.format_exc())
    return run


def after(ms, fn):
    QTimer.singleShot(ms, guarded(fn))


def _run_script():
    path = os.environ.get("BRUSHWORK_KRITA_SCRIPT")
    if not path:
        return
    with open(_out("driver_started.txt"), "w", encoding="utf-8") as f:
        f.write("ok\n")
    # if Krita crashes, the Python stack it crashed in goes here (the test shows it)
    faulthandler.enable(open(_out("crash.txt"), "w", encoding="utf-8"))   # noqa: SIM115 - open until exit
    QTimer.singleShot(TIME_LIMIT_MS, lambda: fail(f"time limit of {TIME_LIMIT_MS} ms reached"))
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    namespace = {"app": Krita.instance(), "out": os.environ["BRUSHWORK_KRITA_OUT"], "after": after,
                 "finish": finish, "fail": fail, "guarded": guarded, "__name__": "brushwork_test_script"}
    exec(code, namespace)


def _on_window(*_):
    QTimer.singleShot(0, guarded(_run_script))


Krita.instance().notifier().windowCreated.connect(_on_window)
