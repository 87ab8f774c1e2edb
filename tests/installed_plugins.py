"""The editor plug-ins as their installers lay them out, importable in the test process.

Plug-in modules import the vendored client and protocol (``brushwork_client/`` inside Krita's
package, ``client.py`` and ``protocol.py`` beside GIMP's modules), which only the installers put
in place: tests import those modules from a copy installed once per test process.
"""

import atexit
import functools
import importlib
import shutil
import sys
import tempfile
from pathlib import Path


@functools.cache
def _install_root():
    root = Path(tempfile.mkdtemp(prefix="brushwork-test-plugins-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.cache
def _krita_dir():
    from plugin_krita.installer import stage

    folder = _install_root() / "krita"
    stage(folder / "brushwork", recorded_executable=None)
    sys.path.insert(0, str(folder))
    return folder


@functools.cache
def _gimp_dir():
    from plugin_gimp.installer import install

    folder = install(home=_install_root() / "gimp-home", python=[sys.executable]).splitlines()[0]
    sys.path.append(folder)   # as GIMP runs brushwork.py: its folder is on sys.path
    return folder


def krita_module(name):
    """The installed Krita plug-in's module ``name`` (e.g. ``settings``: ``brushwork.settings``)."""
    _krita_dir()
    return importlib.import_module(f"brushwork.{name}")


def gimp_module(name):
    """The installed GIMP plug-in's module ``name`` (e.g. ``settings``), imported as GIMP's Python does."""
    folder = _gimp_dir()
    module = importlib.import_module(name)
    assert Path(module.__file__).parent == Path(folder), f"{name} comes from {module.__file__}, not {folder}"
    return module
