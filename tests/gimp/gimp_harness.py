"""Helpers for the GIMP end-to-end tests: the chroots, chroot commands, one GIMP batch run over many cases."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
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


def run_gimp(root, job_chroot_path, home_chroot_path, endpoint, display=False, env=()):
    """Run gimp_driver.py in the chroot's gimp-console over the job folder; return the CompletedProcess.

    ``display``: under Xvfb, so that plug-in dialogs can open; ``env``: more ``NAME=value`` settings.
    """
    driver = f"{job_chroot_path}/gimp_driver.py"
    batch = f"exec(open({driver!r}).read())"
    xvfb = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"] if display else []
    command = chroot_command(root, "env", "-i", f"HOME={home_chroot_path}", "PATH=/usr/bin:/bin",
                             f"TMPDIR={job_chroot_path}", f"BRUSHWORK_ENDPOINT={endpoint}",
                             f"BRUSHWORK_GIMP_JOB={job_chroot_path}", *env,
                             *xvfb, gimp_binary(root), "-i", "--batch-interpreter=python-fu-eval", "-b", batch, "--quit")
    return subprocess.run(command, capture_output=True, text=True, timeout=GIMP_TIMEOUT_S)


def run_cases(root, job_dir, endpoint, cases, inputs, display=False, env=(), home="home"):
    """Write the inputs and cases, run GIMP once (see :func:`run_gimp`) with HOME the job's ``home``
    folder, return results.json as a dict."""
    host, inside = job_dir
    for name, data in inputs.items():
        (host / name).write_bytes(data)
    (host / "cases.json").write_text(json.dumps(cases))
    shutil.copyfile(Path(__file__).with_name("gimp_driver.py"), host / "gimp_driver.py")
    completed = run_gimp(root, inside, f"{inside}/{home}", endpoint, display, env)
    results = host / "results.json"
    assert results.exists(), f"GIMP run failed (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    return json.loads(results.read_text())
