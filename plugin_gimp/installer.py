"""Install the GIMP 3 plug-in into a user's GIMP config: ``brushwork install-plugin gimp``.

GIMP 3 runs ``<profile>/plug-ins/brushwork/brushwork.py`` with the system ``python3`` (its
shebang). Each GIMP minor version has its own profile (``~/.config/GIMP/3.0``,
``~/.config/GIMP/3.2``); the plug-in goes into every GIMP 3 profile there is. With none yet it goes
into the 3.0 and 3.2 profiles: GIMP 3.2 copies a 3.0 profile only when it has none of its own, so
either way the next GIMP 3 to start finds it. The plug-in folder gets the daemon client
(``backend/client.py`` and ``protocol.py``, the same files the CLI uses, and ``managed_daemon.py``)
and needs pyzmq importable by that Python: Debian's ``python3-zmq`` or a user-installed pyzmq, else
the pyzmq of this environment is copied in when the Python versions match. ``installed.json``
records this installation's ``brushwork`` program, so the plug-in can start the daemon itself, and
its bundled models, so a dialog can list them while no daemon answers.
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
VENDORED_BACKEND = ("client.py", "managed_daemon.py", "protocol.py")
_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); import zmq; print(zmq.__version__)"


NEW_PROFILES = ("3.0", "3.2")  # where the plug-in goes when the user has no GIMP 3 profile yet


def gimp_config_dir(home=None):
    """The folder holding GIMP's per-version profiles: ``$XDG_CONFIG_HOME/GIMP`` or ``<home>/.config/GIMP``."""
    if home is not None:
        return Path(home) / ".config" / "GIMP"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "GIMP"


def profiles(home=None):
    """The user's GIMP 3 profile folders (``3.0``, ``3.2``, ...), oldest first; [] when GIMP 3 never ran.

    ``GIMP3_DIRECTORY`` (GIMP's own override) names the one profile when set and ``home`` is not given.
    """
    if home is None and os.environ.get("GIMP3_DIRECTORY"):
        return [Path(os.environ["GIMP3_DIRECTORY"])]
    config = gimp_config_dir(home)
    found = [d for d in config.glob("3.*") if d.is_dir() and d.name[2:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[2:]))


def plugin_dirs(home=None):
    """Where the plug-in goes: ``<profile>/plug-ins/brushwork`` for every GIMP 3 profile, or for
    the 3.0 and 3.2 profiles when there is none yet."""
    existing = profiles(home)
    targets = existing or [gimp_config_dir(home) / version for version in NEW_PROFILES]
    return [profile / "plug-ins" / PLUGIN_NAME for profile in targets]


def install(uninstall=False, home=None, python=None):
    """Install (or with ``uninstall=True`` remove) the plug-in in every GIMP 3 profile (see
    :func:`plugin_dirs`); return the plug-in folders, one a line.

    ``python`` is the command that runs GIMP's Python (default ``["python3"]``; the tests
    pass ``["chroot", DIR, "python3"]``). Raises RuntimeError with instructions when that
    Python cannot import pyzmq and none can be supplied.
    """
    if uninstall:
        removed = [folder for folder in (p / "plug-ins" / PLUGIN_NAME for p in profiles(home)) if folder.exists()]
        for folder in removed:
            shutil.rmtree(folder)
        return "\n".join(map(str, removed))
    needs_vendor = _check_pyzmq(list(python or ["python3"]))
    targets = plugin_dirs(home)
    for target in targets:
        _install_into(target, needs_vendor)
    return "\n".join(map(str, targets))


def _install_into(target, needs_vendor):
    """Copy the plug-in into ``target`` through a staging folder, so a failed copy leaves the old one."""
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
    (staging / "installed.json").write_text(json.dumps({"brushwork_executable": _brushwork_executable(),
                                                        "bundled_models": bundled_models()}))
    os.chmod(staging / f"{PLUGIN_NAME}.py", 0o755)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def bundled_models():
    """Name, display name, kind and scale of each model in ``backend/models`` (what a dialog lists
    before the daemon ever answered)."""
    models = []
    for path in sorted((BACKEND_DIR / "models").glob("*.json")):
        meta = json.loads(path.read_text(encoding="utf-8"))
        models.append({key: meta.get(key) for key in ("name", "display_name", "kind", "scale")})
    return models


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
