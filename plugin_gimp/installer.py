"""Install the GIMP 3 plug-in into a user's GIMP config: ``brushwork install-plugin gimp``.

GIMP 3 runs ``<config>/plug-ins/brushwork/brushwork.py`` with the system ``python3`` (its
shebang). The plug-in folder gets the daemon client (``backend/client.py`` and
``backend/protocol.py``, the same files the CLI uses) and needs pyzmq importable by that
Python: Debian's ``python3-zmq`` or a user-installed pyzmq, else the pyzmq of this
environment is copied in when the Python versions match. ``installed.json`` records this
installation's ``brushwork`` program so the plug-in can start the daemon itself.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN_NAME = "brushwork"
SOURCE_DIR = Path(__file__).resolve().parent / "brushwork"
BACKEND_DIR = Path(__file__).resolve().parents[1] / "backend"
VENDORED_BACKEND = ("client.py", "protocol.py")
_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); import zmq; print(zmq.__version__)"


def plugin_dir(home=None):
    """``<home>/.config/GIMP/3.0/plug-ins/brushwork`` (home defaults to the user's)."""
    home = Path(home) if home is not None else Path.home()
    return home / ".config" / "GIMP" / "3.0" / "plug-ins" / PLUGIN_NAME


def install(uninstall=False, home=None, python=None):
    """Install (or with ``uninstall=True`` remove) the plug-in; return the plug-in folder as a string.

    ``python`` is the command that runs GIMP's Python (default ``["python3"]``; the tests
    pass ``["chroot", DIR, "python3"]``). Raises RuntimeError with instructions when that
    Python cannot import pyzmq and none can be supplied.
    """
    target = plugin_dir(home)
    if uninstall:
        if target.exists():
            shutil.rmtree(target)
        return str(target)
    needs_vendor = _check_pyzmq(list(python or ["python3"]))
    staging = target.with_name(PLUGIN_NAME + ".installing")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for source in SOURCE_DIR.glob("*.py"):
        shutil.copyfile(source, staging / source.name)
    for name in VENDORED_BACKEND:
        shutil.copyfile(BACKEND_DIR / name, staging / name)
    if needs_vendor:
        _vendor_pyzmq(staging / "vendor")
    (staging / "installed.json").write_text(json.dumps({"brushwork_executable": _brushwork_executable()}))
    os.chmod(staging / f"{PLUGIN_NAME}.py", 0o755)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return str(target)


def _brushwork_executable():
    """This installation's ``brushwork`` program (for the plug-in's managed daemon), or ""."""
    beside = Path(sys.executable).parent / "brushwork"
    return str(beside) if beside.exists() else shutil.which("brushwork") or ""


def _check_pyzmq(python):
    """False if GIMP's Python imports zmq, True if ours can be copied in; else RuntimeError."""
    try:
        probe = subprocess.run([*python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"cannot run GIMP's Python ({' '.join(python)}): {e}") from None
    lines = probe.stdout.split()
    if probe.returncode == 0 and len(lines) == 2:
        return False
    if not lines:
        raise RuntimeError(f"cannot run GIMP's Python ({' '.join(python)}): {probe.stderr.strip()}")
    ours = "%d.%d" % sys.version_info[:2]
    if lines[0] == ours and sys.platform.startswith("linux"):
        return True
    raise RuntimeError(
        f"GIMP's Python {lines[0]} cannot import pyzmq, which the brushwork plug-in needs. Install it for "
        "that Python (Debian/Ubuntu: `sudo apt install python3-zmq`; elsewhere: "
        f"`{' '.join(python)} -m pip install --user pyzmq`) and run the installer again.")


def _vendor_pyzmq(dest):
    """Copy this environment's pyzmq (package plus its bundled libzmq) into ``dest``."""
    import zmq
    package = Path(zmq.__file__).resolve().parent
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(package, dest / "zmq", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    libs = package.parent / "pyzmq.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / "pyzmq.libs")
