"""Run a real Krita GUI on Xvfb with the installed brushwork plug-in and a driver script.

Four Kritas are tested (``KRITAS``): this machine's own (Debian 12's Krita 5.1) and the Kritas
5.2, 5.3 and 6.0 of the Debian chroots that ``tools/editor-chroot.sh`` builds. A chroot's Krita
runs in a private mount namespace (``unshare --mount``) with /tmp, /proc, /sys and /dev bound
in, so every path under pytest's tmp (HOME, TMPDIR, IPC sockets) is the same inside and out,
and nothing is left mounted afterwards. The Python environment running the tests (checkout,
virtual environment, its base Python) is bound in read-only at the same paths, so the managed
daemon the plug-in starts (``.venv/bin/brushwork``) runs inside the chroot too. Every Krita
draws on its own Xvfb, started on this machine.

A template HOME is built once per Krita (plug-in installed with the real installer, test driver
plug-in enabled, Krita's first-run resource copy done) and copied for every run; each run gets
its own HOME and TMPDIR, since Krita refuses a second instance on the same pair.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from plugin_krita import installer  # noqa: E402

DRIVER = HERE / "driver"
DRIVER_NAME = "brushwork_test_driver"
KRITA_TIMEOUT_S = 300   # generous: a busy shared machine slows Krita's start a lot
CHROOTS = Path(os.environ.get("BRUSHWORK_EDITOR_CHROOTS", "/var/cache/brushwork"))
SYSTEM_DIRS = tuple(Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var", "/opt", "/tmp"))


@dataclass(frozen=True)
class Krita:
    """One Krita to test: ``version`` (major.minor) from Debian ``suite``'s chroot, or this machine's."""

    version: str
    suite: str = ""   # "" = the krita on this machine's PATH

    def __str__(self):
        return f"krita{self.version}-{self.suite or 'host'}"

    @property
    def root(self):
        """The system root Krita is installed in (the chroot's directory, or /)."""
        return CHROOTS / self.suite if self.suite else Path("/")

    def missing(self):
        """Why this Krita cannot run here ("" when it can)."""
        if not shutil.which("Xvfb"):
            return "Xvfb is not installed (`make editors`)"
        if not self.suite:
            if not shutil.which("krita"):
                return "krita is not installed (`make editors`)"
        elif not (self.root / "usr" / "bin" / "krita").exists():
            return f"no Krita chroot at {self.root}: build it with `sudo tools/editor-chroot.sh {self.suite}`"
        elif os.geteuid() != 0 or not shutil.which("unshare"):
            return "running Krita in a chroot needs root and unshare"
        installed = self.installed_version()
        if not installed.startswith(self.version + "."):
            return f"{self.root} has Krita {installed or '(none)'}, not {self.version}: rebuild it"
        return ""

    def installed_version(self):
        """The krita package's upstream version in this root, e.g. "5.2.9" ("" when not installed)."""
        status = (self.root / "var" / "lib" / "dpkg" / "status").read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^Package: krita\n(?:[^\n]+\n)*?Version: (?:\d+:)?([\d.]+)", status, re.M)
        return match.group(1) if match else ""

    def command(self, argv, env):
        """The command line that runs ``argv`` with exactly ``env``, in this Krita's root."""
        environment = [f"{key}={value}" for key, value in env.items()]
        if not self.suite:
            return ["env", "-i", *environment, *argv]
        root = shlex.quote(str(self.root))
        mounts = [f"mount --rbind /dev {root}/dev", f"mount -t proc proc {root}/proc",
                  f"mount --rbind /sys {root}/sys", f"mount --bind /tmp {root}/tmp"]
        for path in host_python_dirs():
            inside = shlex.quote(f"{self.root}{path}")
            mounts += [f"mkdir -p {inside}", f"mount --bind {shlex.quote(str(path))} {inside}",
                       f"mount -o remount,ro,bind {inside}"]
        script = " && ".join(mounts) + f" && exec chroot {root} \"$@\""
        return ["unshare", "--mount", "--fork", "sh", "-c", script, "sh", "env", "-i", *environment, *argv]

    def runs_host_python(self):
        """True when the test environment's Python (and so its ``brushwork`` daemon) runs in this root."""
        return not self.suite or not _inside(Path(sys.executable).resolve(), SYSTEM_DIRS)


KRITAS = (Krita("5.1"), Krita("5.2", "trixie"), Krita("5.3", "sid"), Krita("6.0", "experimental"))


def _inside(path, directories):
    return any(path == d or d in path.parents for d in directories)


def host_python_dirs():
    """Directories of the running Python environment outside the system dirs, outermost first.

    The checkout, the virtual environment, its base Python (e.g. pyenv's) and site directories
    added by .pth files: what ``.venv/bin/brushwork`` needs to run inside a chroot.
    """
    candidates = {REPO, Path(sys.prefix), Path(sys.base_prefix), *(Path(p) for p in sys.path if p)}
    real = sorted({p.resolve() for p in candidates if p.is_dir()} - {Path("/")}, key=lambda p: len(p.parts))
    chosen = []
    for path in real:
        if not _inside(path, SYSTEM_DIRS) and not _inside(path, chosen):
            chosen.append(path)
    return chosen


def build_template_home(krita, home):
    """Install brushwork and the test driver into ``home`` and let ``krita`` do its first-run setup there."""
    home = Path(home)
    subprocess.run([str(Path(sys.executable).parent / "brushwork"), "install-plugin", "krita", "--home", str(home),
                    "--krita-root", str(krita.root)], check=True, capture_output=True, text=True)
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    shutil.copytree(DRIVER / DRIVER_NAME, pykrita / DRIVER_NAME)
    shutil.copy2(DRIVER / f"{DRIVER_NAME}.desktop", pykrita)
    kritarc = home / ".config" / "kritarc"
    text = installer.set_ini_key(kritarc.read_text(encoding="utf-8"), "python", f"enable_{DRIVER_NAME}", "true")
    kritarc.write_text(text, encoding="utf-8")
    warm_up = home.parent / "warm-up"
    warm_up.mkdir(exist_ok=True)
    # quitting while a first start is still settling can hang Krita 5.1: give it a moment
    (warm_up / "script.py").write_text("after(3000, finish)\n", encoding="utf-8")
    run = run_krita(krita, home, warm_up, warm_up / "script.py", copy_home=False)
    if run.returncode != 0 or not (warm_up / "out" / "driver_started.txt").exists():
        raise RuntimeError(f"{krita} did not start the test driver (exit {run.returncode}):\n{run.stdout[-3000:]}")
    return home


def write_settings(home, **values):
    """Write the plug-in's settings.json into a HOME (Krita's AppDataLocation is ~/.local/share/krita)."""
    path = Path(home) / ".local" / "share" / "krita" / "brushwork" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def run_krita(krita, home, work_dir, script, copy_home=True, env=None):
    """Start ``krita`` with ``script`` run by the driver; returns the CompletedProcess (output in .stdout).

    With ``copy_home`` the template ``home`` is copied to ``work_dir/home`` first. The script's
    ``out`` folder is ``work_dir/out``. Krita gets a clean environment: HOME, TMPDIR,
    XDG_RUNTIME_DIR and the driver's variables under ``work_dir``, plus ``env``.
    """
    work_dir = Path(work_dir)
    if copy_home:
        shutil.copytree(home, work_dir / "home", symlinks=True)
        home = work_dir / "home"
    (work_dir / "tmp").mkdir(parents=True, exist_ok=True)
    (work_dir / "runtime").mkdir(mode=0o700, exist_ok=True)
    (work_dir / "out").mkdir(exist_ok=True)
    with x_server() as display:
        run_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": os.environ.get("LANG", "C.UTF-8"),
                   "DISPLAY": display, "HOME": str(home), "TMPDIR": str(work_dir / "tmp"),
                   "XDG_RUNTIME_DIR": str(work_dir / "runtime"), "BRUSHWORK_KRITA_SCRIPT": str(script),
                   "BRUSHWORK_KRITA_OUT": str(work_dir / "out"), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        command = krita.command(["krita", "--nosplash"], run_env)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", start_new_session=True) as process:
            try:
                output, _ = process.communicate(timeout=KRITA_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)   # Krita (and the chroot's unshare): the group we started
                output, _ = process.communicate()
                raise RuntimeError(f"{krita} did not quit within {KRITA_TIMEOUT_S} s:\n{output[-3000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, output)


@contextmanager
def x_server():
    """A private Xvfb on this machine (1280x1024); yields its DISPLAY.

    Xvfb picks a free display number itself (``-displayfd``), so Kritas started side by side
    never race for one as ``xvfb-run -a`` can; a chroot's Krita reaches it through /tmp/.X11-unix.
    ``-noreset``: without it Xvfb resets whenever its last client disconnects, and Kritas
    started on it sometimes failed with "could not connect to display".
    """
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-noreset",
                               "-nolisten", "tcp"], pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    try:
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit {server.wait()})")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait()
