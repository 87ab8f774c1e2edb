"""Helpers for the GIMP end-to-end tests: chroot commands, one GIMP batch run over many cases."""

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

DEFAULT_CHROOT = "/var/cache/brushwork/trixie"
GIMP_TIMEOUT_S = 300


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroot_command(root, *command):
    """``chroot ROOT command`` (through an unprivileged user namespace when not root)."""
    prefix = [] if os.geteuid() == 0 else ["unshare", "-r"]
    return [*prefix, "chroot", str(root), *command]


def run_gimp(root, job_chroot_path, home_chroot_path, endpoint):
    """Run gimp_driver.py in gimp-console-3.0 over the job folder; return the CompletedProcess."""
    driver = f"{job_chroot_path}/gimp_driver.py"
    batch = f"exec(open({driver!r}).read())"
    command = chroot_command(root, "env", "-i", f"HOME={home_chroot_path}", "PATH=/usr/bin:/bin",
                             f"TMPDIR={job_chroot_path}", f"BRUSHWORK_ENDPOINT={endpoint}",
                             f"BRUSHWORK_GIMP_JOB={job_chroot_path}",
                             "gimp-console-3.0", "-i", "--batch-interpreter=python-fu-eval", "-b", batch, "--quit")
    return subprocess.run(command, capture_output=True, text=True, timeout=GIMP_TIMEOUT_S)


def run_cases(root, job_dir, endpoint, cases, inputs):
    """Write the inputs and cases, run GIMP once, return results.json as a dict."""
    host, inside = job_dir
    for name, data in inputs.items():
        (host / name).write_bytes(data)
    (host / "cases.json").write_text(json.dumps(cases))
    shutil.copyfile(Path(__file__).with_name("gimp_driver.py"), host / "gimp_driver.py")
    completed = run_gimp(root, inside, f"{inside}/home", endpoint)
    results = host / "results.json"
    assert results.exists(), f"GIMP run failed (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    return json.loads(results.read_text())
