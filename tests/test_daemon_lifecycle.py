"""The daemon's life as a real subprocess: its default private socket, SIGTERM and SIGINT, the
endpoints it refuses with a reason, and what it tells clients over TCP and over its IPC socket."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading

from backend import protocol
from backend.client import Client
from daemon_process import REPO, daemon_env, daemon_output, start_daemon, stop_daemon
from served_daemon import big_job
from served_daemon import client, daemon, served_models  # noqa: F401  (pytest fixtures)


def test_sigterm_cancels_the_job_exits_0_and_removes_a_private_socket(models_dir, tmp_path):
    """The default endpoint: a socket in $XDG_RUNTIME_DIR/brushwork/, owner-only."""
    (tmp_path / "run").mkdir()
    sock_dir = tmp_path / "run" / "brushwork"
    sock_path = sock_dir / "daemon.sock"
    endpoint = f"ipc://{sock_path}"
    proc = start_daemon(tmp_path, endpoint, models_dir, listen=[], env={"XDG_RUNTIME_DIR": str(tmp_path / "run")})
    assert stat.S_IMODE(os.stat(sock_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    out = daemon_output(proc)
    assert endpoint in out and "device cpu, precision fp32" in out and "mosaic (style)" in out

    buf, width, height, fmt = big_job()
    errors = []

    def job():
        with Client(endpoint, timeout=20) as c:
            try:
                c.stylize(buf, width, height, fmt, "mosaic", progress=lambda d, t, m: d and proc.send_signal(signal.SIGTERM))
            except protocol.BrushworkError as exc:
                errors.append(exc.code)

    worker = threading.Thread(target=job)
    worker.start()
    worker.join(60)
    assert proc.wait(30) == 0, daemon_output(proc)
    assert errors == ["cancelled"]
    assert not sock_path.exists()
    assert "stopped" in daemon_output(proc)
    stop_daemon(proc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_daemon_without_models_says_how_to_get_one_and_stops_on_sigint(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_daemon(tmp_path, endpoint, empty, "--no-bundled", listen=["--tcp", endpoint[len("tcp://"):]])
    out = daemon_output(proc)
    with Client(endpoint, timeout=10) as c:
        assert c.info()["models"] == []
    assert stop_daemon(proc, sig=signal.SIGINT) == 0
    assert f"listening on {endpoint}" in out
    assert "no models installed" in out and "brushwork train style" in out
    assert str(tmp_path / "xdg-data" / "brushwork" / "models") in out


def run_serve(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "backend.cli", "serve", *args], cwd=REPO, env=daemon_env(tmp_path),
                          capture_output=True, text=True, timeout=120)


def test_non_loopback_bind_is_refused_with_a_clear_message(tmp_path):
    done = run_serve(tmp_path, "--tcp", "0.0.0.0:5599")
    assert done.returncode == 1
    assert "loopback" in done.stderr and "Traceback" not in done.stderr


def test_second_daemon_on_the_same_endpoint_is_refused(daemon, tmp_path, client):
    done = run_serve(tmp_path, "--endpoint", daemon.endpoint)
    assert done.returncode == 1
    assert "already running" in done.stderr and "Traceback" not in done.stderr
    assert client.ping() > 0


def test_an_abstract_ipc_endpoint_is_refused_with_a_reason_not_a_traceback(tmp_path):
    done = run_serve(tmp_path, "--endpoint", f"ipc://@brushwork-test-{os.getpid()}", "--device", "cpu")
    assert done.returncode == 1, done.stdout
    assert "abstract socket" in done.stderr and "every local user" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_loopback_tcp_without_keys_warns_and_keeps_server_paths_out_of_info(models_dir, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(models_dir, served)
    (served / "broken.json").write_text("{")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_daemon(tmp_path, endpoint, served, listen=["--tcp", endpoint[len("tcp://"):]])
    try:
        with Client(endpoint, timeout=10) as client:
            info = client.info()
        assert info["models"] and all(m["path"] == f"{m['name']}.json" for m in info["models"])
        assert info["problems"] and all(str(tmp_path) not in p and p.startswith("broken.json: ")
                                        for p in info["problems"])
        assert "warning:" in daemon_output(proc) and "every user of this machine" in daemon_output(proc)
    finally:
        assert stop_daemon(proc) == 0


def test_a_daemon_on_its_ipc_socket_tells_its_own_user_the_paths(client, served_models):
    info = client.info()
    assert all(os.path.isabs(m["path"]) for m in info["models"])
