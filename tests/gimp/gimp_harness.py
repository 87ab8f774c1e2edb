"""Helpers for the GIMP end-to-end tests: the chroots, chroot commands, one GIMP batch run over many cases,
an X server and xdotool for the GUI tests."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# GIMP version -> Debian suite whose chroot (tools/editor-chroot.sh SUITE) has it
GIMP_SUITES = {"3.0": "trixie", "3.2": "sid"}
CHROOT_BASE = "/var/cache/brushwork"
GIMP_TIMEOUT_S = 300


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEAD_ENDPOINT = f"tcp://127.0.0.1:{free_port()}"   # where no daemon answers


def chroot_for(version):
    """Where GIMP ``version``'s chroot is: ``$BRUSHWORK_CHROOTS/SUITE`` (default /var/cache/brushwork/SUITE)."""
    return Path(os.environ.get("BRUSHWORK_CHROOTS", CHROOT_BASE)) / GIMP_SUITES[version]


def gimp_binary(root, kind="console"):
    """The versioned GIMP program in a chroot, e.g. ``gimp-console-3.0`` or ``gimp-3.2``; None if absent.

    Each GIMP 3 minor version installs only its own ``gimp-X.Y`` and ``gimp-console-X.Y``.
    """
    prefix = "gimp-console-" if kind == "console" else "gimp-"
    found = sorted(p.name for p in (Path(root) / "usr/bin").glob(prefix + "3.*") if p.name[len(prefix) + 2:].isdigit())
    return found[-1] if found else None


def chroot_command(root, *command):
    """``chroot ROOT command`` with its own /proc, in private mount and PID namespaces (unprivileged
    when not root). GIMP 3.2's image loaders (glycin) fail to load icons without /proc, and a plug-in
    dialog that cannot load its icons aborts."""
    user = [] if os.geteuid() == 0 else ["-r"]
    # a shell as the namespace's PID 1 (which ignores signals it has no handler for), not the command
    return ["unshare", *user, "--mount", "--pid", "--fork", f"--mount-proc={root}/proc", "chroot", str(root),
            "sh", "-c", '"$@"; exit $?', "sh", *command]


def install_plugin(root, home):
    """``brushwork install-plugin gimp`` into ``home`` (a host path inside the chroot), for the chroot's python3."""
    subprocess.run([str(Path(sys.executable).parent / "brushwork"), "install-plugin", "gimp", "--home", str(home),
                    "--python", shlex.join(chroot_command(root, "python3"))], check=True, capture_output=True, text=True)


def gimp_command(root, job_chroot_path, home_chroot_path, endpoint, display=False, env=(), gui=False):
    """The command that runs gimp_driver.py over the job folder in the chroot's GIMP, then quits.

    ``display``: under Xvfb, so that plug-in dialogs can open; ``env``: more ``NAME=value`` settings
    (``DISPLAY=:N`` for an X server of :func:`x_server`); ``gui``: the full GIMP (image windows,
    progress with its Cancel button), not gimp-console.
    """
    driver = f"{job_chroot_path}/gimp_driver.py"
    batch = f"exec(open({driver!r}).read())"
    xvfb = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"] if display else []
    program = [gimp_binary(root, "gui"), "--no-splash"] if gui else [gimp_binary(root), "-i"]
    return chroot_command(root, "env", "-i", f"HOME={home_chroot_path}", "PATH=/usr/bin:/bin",
                          f"TMPDIR={job_chroot_path}", f"BRUSHWORK_ENDPOINT={endpoint}",
                          f"BRUSHWORK_GIMP_JOB={job_chroot_path}", "NO_AT_BRIDGE=1", *env,
                          *xvfb, *program, "--batch-interpreter=python-fu-eval", "-b", batch, "--quit")


def run_gimp(root, job_chroot_path, home_chroot_path, endpoint, display=False, env=()):
    """Run gimp_driver.py in the chroot's gimp-console over the job folder (see :func:`gimp_command`);
    return the CompletedProcess."""
    command = gimp_command(root, job_chroot_path, home_chroot_path, endpoint, display, env)
    return subprocess.run(command, capture_output=True, text=True, timeout=GIMP_TIMEOUT_S)


def write_job(job_dir, cases, inputs):
    """Put the inputs, the cases and the driver into the job folder."""
    host, _ = job_dir
    for name, data in inputs.items():
        (host / name).write_bytes(data)
    (host / "cases.json").write_text(json.dumps(cases))
    shutil.copyfile(Path(__file__).with_name("gimp_driver.py"), host / "gimp_driver.py")


def read_results(job_dir, output=""):
    """The driver's results.json as a dict (``output``, GIMP's, goes into the failure message)."""
    results = job_dir[0] / "results.json"
    assert results.exists(), f"GIMP run failed:\n{output}"
    return json.loads(results.read_text())


@contextlib.contextmanager
def x_server(root):
    """An Xvfb (no window manager) in the chroot; yields its display number (clients: ``DISPLAY=:N``)."""
    number = next(n for n in range(90, 200) if not (Path(root) / f"tmp/.X11-unix/X{n}").exists())
    # a session of its own, so that one killpg ends unshare, the namespace's shell and Xvfb
    server = subprocess.Popen(chroot_command(root, "Xvfb", f":{number}", "-screen", "0", "1280x1024x24",
                                             "-nolisten", "tcp", "-noreset"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (Path(root) / f"tmp/.X11-unix/X{number}").exists():
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.2)
        yield number
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        for leftover in (f"tmp/.X11-unix/X{number}", f"tmp/.X{number}-lock"):
            (Path(root) / leftover).unlink(missing_ok=True)


def xdotool(root, display, *args):
    """Run xdotool in the chroot on X display ``display``; its output, or "" when it fails (e.g. no such window)."""
    done = subprocess.run(chroot_command(root, "env", f"DISPLAY=:{display}", "xdotool", *args),
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else ""


def run_cases(root, job_dir, endpoint, cases, inputs, display=False, env=(), home="home"):
    """Write the inputs and cases, run GIMP once (see :func:`run_gimp`) with HOME the job's ``home``
    folder, return results.json as a dict."""
    write_job(job_dir, cases, inputs)
    _, inside = job_dir
    completed = run_gimp(root, inside, f"{inside}/{home}", endpoint, display, env)
    return read_results(job_dir, f"exit {completed.returncode}\n{completed.stdout}\n{completed.stderr}")
