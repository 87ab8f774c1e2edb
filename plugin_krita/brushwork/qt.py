"""The Qt binding of the Krita that runs the plug-in: PyQt5 in Krita 5 (Qt 5), PyQt6 in Krita 6 (Qt 6).

Every plug-in module imports its Qt names from here (``from .qt import QLabel, Qt, pyqtSignal``);
a name comes from QtCore, QtGui or QtWidgets, whichever holds it in that binding (``QAction``
moved from QtWidgets to QtGui in Qt 6). The binding is the one Krita's own ``krita`` module is
built on (the module its ``Krita`` class's ``QObject`` base comes from), never a guess by trial
import: Krita 6 refuses PyQt5, and on Krita 5 an installed PyQt6 imports and then crashes Krita.
Write code that runs on both: fully scoped enums (``Qt.ItemDataRole.UserRole``), ``exec()``
not ``exec_()``, nothing Qt 6 removed (``QRegExp``, ``QDesktopWidget``...).
"""

from importlib import import_module


def host_binding():
    """"PyQt5" or "PyQt6": the binding Krita's ``krita`` module uses (ImportError outside Krita)."""
    from krita import Krita
    qobject = next(base for base in Krita.__mro__ if base.__name__ == "QObject")
    return qobject.__module__.split(".")[0]


BINDING = host_binding()
QtCore = import_module(f"{BINDING}.QtCore")
QtGui = import_module(f"{BINDING}.QtGui")
QtWidgets = import_module(f"{BINDING}.QtWidgets")


def __getattr__(name):
    for module in (QtCore, QtGui, QtWidgets):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"{BINDING} has no {name!r} in QtCore, QtGui or QtWidgets")
