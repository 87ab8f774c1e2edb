"""Start and stop real `brushwork serve` daemons as subprocesses for the integration tests."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import protocol
from backend.client import Client

REPO = Path(__file__).resolve().parents[1]
# Small tiles (the engine's minimum) so modest images take several tiles; fp32 on the CPU
# so the daemon's output can be compared with an in-process Engine bit for bit.
ENGINE_ARGS = ("--device", "cpu", "--precision", "fp32", "--tile-size", "128")


def daemon_env(tmp_path):
    """Environment for a daemon subprocess: a private, empty user model dir, no training content."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg-data"), PYTHONPATH=str(REPO))
    env.pop("BRUSHWORK_ENDPOINT", None)
    env.pop("BRUSHWORK_CONTENT", None)
    return env


def start_daemon(tmp_path, endpoint, models_dir, *extra, listen=None, env=None, client_options=None):
    """Run `python -m backend.cli serve` at ``endpoint`` (or with ``listen`` args); wait until it answers
    a client made with ``client_options`` (e.g. CURVE keys)."""
    log = open(tmp_path / f"daemon-{time.monotonic_ns()}.log", "w+")
    listen = ["--endpoint", endpoint] if listen is None else listen
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", *listen,
                             "--models", str(models_dir), *ENGINE_ARGS, *extra],
                            cwd=REPO, env=dict(daemon_env(tmp_path), **(env or {})), stdout=log,
                            stderr=subprocess.STDOUT)
    proc.log = log
    wait_until_answering(proc, endpoint, **(client_options or {}))
    return proc


def daemon_output(proc):
    proc.log.flush()
    proc.log.seek(0)
    return proc.log.read()


def wait_until_answering(proc, endpoint, timeout=90, **client_options):
    deadline = time.monotonic() + timeout
    with Client(endpoint, timeout=0.5, **client_options) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited with {proc.returncode}:\n{daemon_output(proc)}")
            try:
                client.ping()
                return
            except protocol.Unavailable:
                time.sleep(0.1)
    stop_daemon(proc)
    pytest.fail(f"daemon did not answer within {timeout} s:\n{daemon_output(proc)}")


def stop_daemon(proc, sig=signal.SIGTERM, timeout=30):
    """Signal the daemon and return its exit code (killing it if it hangs)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.log.close()
    return proc.returncode
