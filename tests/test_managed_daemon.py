"""backend.managed_daemon: the `brushwork serve` a plug-in starts and watches, and finding the program."""

import json
import sys
from pathlib import Path

import pytest

from backend import pixels, protocol
from backend.client import Client
from backend.managed_daemon import ManagedDaemon, find_executable, read_recorded_executable
from daemon_process import ENGINE_ARGS
from helpers import random_image

FMT = {"dtype": "u8", "channels": "BGRA"}


def program(path, text="#!/bin/sh\nexit 0\n"):
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_the_configured_program_comes_first_then_the_installers_then_path(tmp_path, monkeypatch):
    configured, recorded = program(tmp_path / "mine"), program(tmp_path / "installed")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    monkeypatch.setenv("PATH", str(on_path))
    assert find_executable(configured, recorded) == configured
    assert find_executable("", recorded) == recorded
    with pytest.raises(protocol.Unavailable, match="`brushwork` program was not found: set its path in Settings"):
        find_executable("", str(tmp_path / "uninstalled"), "Settings")
    path_program = program(on_path / "brushwork")
    assert find_executable(None, str(tmp_path / "uninstalled")) == path_program


@pytest.mark.parametrize("configured", ["missing", "not_executable", "folder"])
def test_a_configured_program_that_cannot_run_is_an_error_not_skipped(tmp_path, configured):
    (tmp_path / "not_executable").write_text("#!/bin/sh\n")
    (tmp_path / "folder").mkdir()
    with pytest.raises(protocol.Unavailable, match="is not an executable file: fix it in the docker"):
        find_executable(str(tmp_path / configured), program(tmp_path / "installed"), "the docker")


def test_the_installers_record_is_read_and_a_broken_one_ignored(tmp_path):
    record = tmp_path / "install.json"
    assert read_recorded_executable(record) is None
    for broken in ("{not json", "[1]", '{"brushwork_executable": 3}', '{"brushwork_executable": ""}'):
        record.write_text(broken)
        assert read_recorded_executable(record) is None, broken
    record.write_text(json.dumps({"version": "1", "brushwork_executable": "/opt/bw/bin/brushwork"}))
    assert read_recorded_executable(record) == "/opt/bw/bin/brushwork"


def test_managed_daemon_that_dies_mid_job_ends_the_wait_with_its_exit(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("BRUSHWORK_CONTENT", raising=False)
    log = tmp_path / "logs" / "daemon.log"       # its folder is made
    managed = ManagedDaemon(str(Path(sys.executable).parent / "brushwork"), f"ipc://{tmp_path}/managed.sock",
                            ["--models", str(models_dir), *ENGINE_ARGS], str(log))
    client = Client(managed.endpoint, timeout=120)
    waited = []
    try:
        managed.ensure_ready(client, timeout=90, waiting=lambda: waited.append(1))
        assert client.daemon is managed and managed.running and managed.exit_message() is None
        assert waited
        managed.ensure_ready(client)                  # running and answering: nothing to start
        first = managed.process

        def kill_on_first_tile(done, total, message):
            if done and managed.running:
                managed.process.kill()

        big = pixels.encode(random_image(256, 320, 10), None, FMT)
        with pytest.raises(protocol.Unavailable) as err:
            client.stylize(big, 320, 256, FMT, "mosaic", progress=kill_on_first_tile)
        assert err.value.message == f"the brushwork daemon this plug-in started was killed by signal 9; see {log}"
        assert not managed.running and managed.process is first
    finally:
        managed.stop()
    assert log.is_file()


def test_managed_daemon_that_exits_at_start_up_says_so(tmp_path):
    log = tmp_path / "daemon.log"
    managed = ManagedDaemon(program(tmp_path / "brushwork", "#!/bin/sh\necho no torch here >&2\nexit 3\n"),
                            f"ipc://{tmp_path}/never.sock", log_path=str(log))
    with pytest.raises(protocol.Unavailable, match=f"exited with code 3; see {log}"):
        managed.ensure_ready(Client(managed.endpoint), timeout=30)
    assert "no torch here" in log.read_text()


def test_a_daemon_that_never_answers_is_given_up_after_the_timeout(tmp_path):
    managed = ManagedDaemon(program(tmp_path / "brushwork", "#!/bin/sh\nexec sleep 60\n"),
                            f"ipc://{tmp_path}/silent.sock")
    try:
        with pytest.raises(protocol.Unavailable, match="did not answer at .* within 1 s"):
            managed.ensure_ready(Client(managed.endpoint), timeout=1.0)
        assert managed.running
    finally:
        managed.stop(grace_s=1.0)
    assert not managed.running


def test_waiting_for_a_daemon_can_be_cancelled(tmp_path):
    managed = ManagedDaemon(program(tmp_path / "brushwork", "#!/bin/sh\nexec sleep 60\n"),
                            f"ipc://{tmp_path}/silent.sock")
    asked = []
    try:
        with pytest.raises(protocol.Cancelled):
            managed.ensure_ready(Client(managed.endpoint), should_cancel=lambda: asked.append(1) or len(asked) > 2)
    finally:
        managed.stop(grace_s=1.0)


def test_a_program_that_cannot_start_is_unavailable(tmp_path):
    managed = ManagedDaemon(str(tmp_path / "gone"), f"ipc://{tmp_path}/never.sock")
    with pytest.raises(protocol.Unavailable, match="could not start"):
        managed.start()
    assert not managed.running and managed.exit_message() is None


def test_stop_ends_the_process_and_is_safe_twice(tmp_path):
    managed = ManagedDaemon(program(tmp_path / "brushwork", "#!/bin/sh\nexec sleep 60\n"), f"ipc://{tmp_path}/s.sock")
    managed.start()
    process = managed.process
    assert managed.running
    managed.stop(grace_s=5.0)
    managed.stop()
    assert not managed.running and process.returncode is not None
