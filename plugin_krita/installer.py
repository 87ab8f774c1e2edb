"""Install, upgrade, remove or package the Krita plug-in (`brushwork install-plugin krita`).

Krita loads Python plug-ins from ``~/.local/share/krita/pykrita/``: a ``<name>.desktop`` file plus a
package folder, enabled by ``enable_<name>=true`` in the ``[python]`` section of
``~/.config/kritarc``. The installer copies ``plugin_krita/brushwork/`` there, vendors the backend's
``client.py``, ``managed_daemon.py`` and ``protocol.py`` into it as the package ``brushwork_client``
(so the plug-in speaks exactly the protocol of the backend that installed it), records the
``brushwork`` executable for the managed daemon, and makes sure Krita's Python can import pyzmq. A
Krita installed in another system root (a chroot, as the end-to-end tests use) is checked there:
``install(krita_root=DIR)``.
"""

import glob
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import backend
from backend import __version__

NAME = "brushwork"
HERE = Path(__file__).resolve().parent
PACKAGE = HERE / NAME
DESKTOP = HERE / f"{NAME}.desktop"
CLIENT_FILES = ("client.py", "managed_daemon.py", "protocol.py")
KRITA_PYTHON_LIBS = ("usr/lib/*/kritaplugins/kritapykrita.so", "usr/lib*/kritaplugins/kritapykrita.so",
                     "usr/local/lib*/kritaplugins/kritapykrita.so")   # relative to the system root


class InstallError(RuntimeError):
    """Installation cannot proceed; the message says what to do."""


def install(uninstall=False, home=None, vendor_zmq="auto", krita_root="/"):
    """Install (or with ``uninstall`` remove) the plug-in under ``home`` (default: yours); return a summary.

    Re-running upgrades: the old files are removed first. ``vendor_zmq``: "auto" vendors a pyzmq
    wheel only when Krita's Python cannot import zmq, "always" or "never" force the choice.
    ``krita_root``: the system root Krita is installed in (a chroot's directory; default /).
    """
    home = Path(home).expanduser() if home else Path.home()
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    target = pykrita / NAME
    desktop = pykrita / DESKTOP.name
    shutil.rmtree(target, ignore_errors=True)
    desktop.unlink(missing_ok=True)
    kritarc = home / ".config" / "kritarc"
    if uninstall:
        if kritarc.exists():
            kritarc.write_text(set_ini_key(kritarc.read_text(encoding="utf-8"), "python", f"enable_{NAME}", None),
                               encoding="utf-8")
        return f"removed the Krita plug-in from {pykrita}"
    stage(target, recorded_executable=brushwork_executable())
    shutil.copy2(DESKTOP, desktop)
    zmq_note = provide_zmq(target, vendor_zmq, krita_root)
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    text = kritarc.read_text(encoding="utf-8") if kritarc.exists() else ""
    kritarc.write_text(set_ini_key(text, "python", f"enable_{NAME}", "true"), encoding="utf-8")
    return (f"installed the Krita plug-in into {target} ({zmq_note}); restart Krita and open "
            f"Settings > Dockers > brushwork")


def package(output=None):
    """Build the ZIP for Krita's Tools > Scripts > Import Python Plugin from File...; return its path.

    The ZIP does not contain pyzmq (it is platform specific): Krita's Python must provide it
    (Debian/Ubuntu: ``apt install python3-zmq``), otherwise the docker says so.
    """
    output = Path(output) if output else Path.cwd() / f"brushwork-krita-{__version__}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / NAME
        stage(staged, recorded_executable=None)
        output.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(DESKTOP, DESKTOP.name)
            for path in sorted(staged.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(tmp).as_posix())
    return output


def stage(target, recorded_executable):
    """Copy the plug-in package to ``target`` with the vendored client and an ``install.json``."""
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "vendor",
                                                                   "brushwork_client"))
    client_dir = target / "brushwork_client"
    client_dir.mkdir()
    (client_dir / "__init__.py").write_text(
        f'"""Copy of brushwork {__version__}\'s backend/{", backend/".join(CLIENT_FILES)}, '
        'made by the installer."""\n', encoding="utf-8")
    for name in CLIENT_FILES:
        shutil.copy2(Path(backend.__file__).parent / name, client_dir / name)
    record = {"version": __version__, "brushwork_executable": recorded_executable}
    (target / "install.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def brushwork_executable():
    """The ``brushwork`` program of this installation (for the managed daemon), or None."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "brushwork" and argv0.is_file():
        return str(argv0.resolve())
    beside = Path(sys.executable).parent / "brushwork"
    if beside.is_file():
        return str(beside)
    return shutil.which("brushwork")


def krita_python(root="/"):
    """((major, minor), interpreter path or None) of the Python Krita embeds, or (None, None).

    Read from Krita's kritapykrita plug-in under the system ``root``, which links libpython3.X;
    the interpreter is the ``python3.X`` of the same prefix, as a path inside ``root`` (e.g.
    /usr/bin/python3.11 for Debian 12's Krita 5.1, /usr/bin/python3.13 for Debian 13's 5.2).
    """
    root = Path(root)
    for pattern in KRITA_PYTHON_LIBS:
        for path in glob.glob(str(root / pattern)):
            match = re.search(rb"libpython3\.(\d+)", Path(path).read_bytes())
            if match:
                version = (3, int(match.group(1)))
                prefix = "/" + Path(path).relative_to(root).as_posix().split("/lib", 1)[0]
                interpreter = f"{prefix.rstrip('/')}/bin/python3.{version[1]}"
                return version, interpreter if (root / interpreter.lstrip("/")).is_file() else None
    return None, None


def python_can_import_zmq(interpreter, root="/"):
    """True when ``interpreter`` (a path inside the system ``root``) exists and imports zmq."""
    if not interpreter:
        return False
    command = [interpreter, "-I", "-c", "import zmq"]
    if Path(root).resolve() != Path("/"):
        command = ["chroot", str(root), *command]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def provide_zmq(target, mode="auto", root="/"):
    """Make pyzmq importable by the Python of the Krita in ``root``, vendoring a wheel into ``target/vendor`` if needed."""
    version, interpreter = krita_python(root)
    if version is None:   # Krita not found there: assume it uses a Python like ours
        version, interpreter = sys.version_info[:2], None
    if mode == "never":
        return "pyzmq not vendored"
    if mode == "auto" and python_can_import_zmq(interpreter, root):
        where = "" if Path(root).resolve() == Path("/") else f" in {root}"
        return f"pyzmq from {interpreter}{where}"
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--only-binary=:all:", "--no-deps", "--python-version", f"{version[0]}.{version[1]}",
                   "--dest", tmp, "pyzmq"]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = glob.glob(str(Path(tmp) / "pyzmq-*.whl"))
        if done.returncode != 0 or not wheels:
            raise InstallError(
                f"Krita's Python {version[0]}.{version[1]} cannot import zmq and no pyzmq wheel could be "
                f"downloaded ({done.stderr.strip()[-300:] or 'no wheel'}). Install pyzmq for that Python "
                "(Debian/Ubuntu: `sudo apt install python3-zmq`) and run the installer again.")
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(target / "vendor")
    return f"vendored {Path(wheels[0]).name}"


def set_ini_key(text, section, key, value):
    """``text`` (an INI file) with ``key=value`` set in ``[section]`` (removed if value is None).

    Every other line is kept as it was, which Krita's own kritarc needs.
    """
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.strip().startswith("[") and line.strip().endswith("]")]
    start = next((i for i in headers if lines[i].strip() == f"[{section}]"), None)
    if start is None:
        if value is None:
            return text
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", f"{key}={value}"]
        return "\n".join(lines) + "\n"
    end = next((i for i in headers if i > start), len(lines))
    body = [line for line in lines[start + 1:end] if line.split("=", 1)[0].strip() != key]
    if value is not None:
        last = max((i for i, line in enumerate(body) if line.strip()), default=-1)
        body.insert(last + 1, f"{key}={value}")
    lines[start + 1:end] = body
    return "\n".join(lines) + "\n"
