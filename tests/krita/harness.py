"""Run the real Krita 5 GUI under Xvfb with the installed brushwork plug-in and a driver script.

A template HOME is built once (plug-in installed with the real installer, test driver plug-in
enabled, Krita's first-run resource copy done) and copied for every run; each run gets its own
HOME and TMPDIR, since Krita refuses a second instance on the same pair.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from plugin_krita import installer  # noqa: E402

DRIVER = HERE / "driver"
DRIVER_NAME = "brushwork_test_driver"
KRITA_TIMEOUT_S = 300   # generous: a busy shared machine slows Krita's start a lot


def krita_available():
    """True when krita and xvfb-run are installed."""
    return bool(shutil.which("krita") and shutil.which("xvfb-run"))


def build_template_home(home):
    """Install brushwork and the test driver into ``home`` and let Krita do its first-run setup there."""
    home = Path(home)
    subprocess.run([str(Path(sys.executable).parent / "brushwork"), "install-plugin", "krita", "--home", str(home)],
                   check=True, capture_output=True, text=True)
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
    run = run_krita(home, warm_up, warm_up / "script.py", copy_home=False)
    if run.returncode != 0 or not (warm_up / "out" / "driver_started.txt").exists():
        raise RuntimeError(f"Krita did not start the test driver (exit {run.returncode}):\n{run.stdout[-3000:]}")
    return home


def write_settings(home, **values):
    """Write the plug-in's settings.json into a HOME (Krita's AppDataLocation is ~/.local/share/krita)."""
    path = Path(home) / ".local" / "share" / "krita" / "brushwork" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def run_krita(home, work_dir, script, copy_home=True, env=None):
    """Start Krita with ``script`` run by the driver; returns the CompletedProcess (output in .stdout).

    With ``copy_home`` the template ``home`` is copied to ``work_dir/home`` first. The script's
    ``out`` folder is ``work_dir/out``.
    """
    work_dir = Path(work_dir)
    if copy_home:
        shutil.copytree(home, work_dir / "home", symlinks=True)
        home = work_dir / "home"
    (work_dir / "tmp").mkdir(parents=True, exist_ok=True)
    (work_dir / "runtime").mkdir(mode=0o700, exist_ok=True)
    (work_dir / "out").mkdir(exist_ok=True)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "BRUSHWORK_", "QT_", "DISPLAY"))}
    run_env.update(HOME=str(home), TMPDIR=str(work_dir / "tmp"), XDG_RUNTIME_DIR=str(work_dir / "runtime"), BRUSHWORK_KRITA_SCRIPT=str(script),
                   BRUSHWORK_KRITA_OUT=str(work_dir / "out"), PYTHONDONTWRITEBYTECODE="1")
    run_env.update(env or {})
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"]
    with subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=KRITA_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)   # xvfb-run, Xvfb and Krita: the group we started
            output, _ = process.communicate()
            raise RuntimeError(f"Krita did not quit within {KRITA_TIMEOUT_S} s:\n{output[-3000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, output)
