"""backend.client: dependencies, timeouts, reconnection after a daemon restart, typed errors, the
check of a result (backend/managed_daemon.py: tests/test_managed_daemon.py)."""

import ast
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from backend import pixels, protocol
from backend.client import KEEPALIVE_TIMEOUT_S, Client, Result
from daemon_process import REPO, start_daemon, stop_daemon
from helpers import random_image

FMT = {"dtype": "u8", "channels": "BGRA"}


@pytest.fixture(scope="module")
def daemon(models_dir, tmp_path_factory):
    """A daemon that tests may kill and replace (``box["proc"]``)."""
    tmp = tmp_path_factory.mktemp("client")
    box = {"endpoint": f"ipc://{tmp}/c.sock", "tmp": tmp, "models": models_dir}
    box["proc"] = start_daemon(tmp, box["endpoint"], models_dir)
    yield box
    stop_daemon(box["proc"])


def test_client_imports_only_pyzmq_and_the_standard_library():
    code = ("import sys, backend.client; "
            "print(sorted(m for m in ('numpy', 'torch', 'PIL', 'backend.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


VENDORED = ("client.py", "managed_daemon.py", "protocol.py")   # what both installers copy into the plug-ins


@pytest.mark.parametrize("module", VENDORED)
def test_client_sources_are_valid_python_3_10(module):
    source = (REPO / "backend" / module).read_text()
    ast.parse(source, feature_version=(3, 10))


def test_vendored_copy_works_without_the_backend_package(tmp_path):
    """The GIMP plug-in ships the client as plain top-level modules."""
    for name in VENDORED:
        shutil.copy(REPO / "backend" / name, tmp_path / name)
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import client, managed_daemon, protocol; "
            f"c = client.Client('ipc://{tmp_path}/nobody.sock', timeout=0.2)\n"
            "try:\n    c.ping()\nexcept protocol.Unavailable as e:\n    print(client.__file__, e.code)")
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == [str(tmp_path / "client.py"), "unavailable"]


def test_no_daemon_raises_unavailable_with_a_clear_message(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    client = Client(endpoint, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(protocol.Unavailable) as err:
        client.ping()
    assert time.monotonic() - started < 5
    assert err.value.code == "unavailable"
    assert endpoint in err.value.message and "brushwork serve" in err.value.message


def test_a_ping_with_its_own_timeout_keeps_the_clients(tmp_path):
    client = Client(f"ipc://{tmp_path}/nobody.sock", timeout=30)
    with pytest.raises(protocol.Unavailable):
        client.ping(timeout=0.2)
    assert client.timeout == 30


def test_pixel_buffer_of_the_wrong_size_is_refused_before_sending(tmp_path):
    client = Client(f"ipc://{tmp_path}/nobody.sock", timeout=0.3)
    with pytest.raises(protocol.BadPixels, match="needs 96"):
        client.stylize(bytes(95), 4, 6, FMT, "mosaic")


def test_default_endpoint_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("BRUSHWORK_ENDPOINT", "tcp://127.0.0.1:6123")
    assert Client().endpoint == "tcp://127.0.0.1:6123"


def test_typed_errors_from_the_daemon(daemon):
    with Client(daemon["endpoint"], timeout=30) as client:
        with pytest.raises(protocol.UnknownModel, match="no_such"):
            client.stylize(bytes(8 * 8 * 4), 8, 8, FMT, "no_such")
        with pytest.raises(protocol.UnknownModel):
            client.upscale(bytes(8 * 8 * 4), 8, 8, FMT, scale=16)
        with pytest.raises(protocol.BadRequest):
            client.stylize(bytes(8 * 8 * 4), 8, 8, FMT, "mosaic", mask=bytes(64), strength=2)
        with pytest.raises(protocol.BadRequest, match="--content"):  # this daemon has no content photos
            client.train_style(bytes(8 * 8 * 4), 8, 8, FMT, "new_style")


def test_accepts_any_bytes_like_pixels(daemon):
    image = pixels.encode(random_image(10, 12, 4), None, FMT)
    with Client(daemon["endpoint"], timeout=30) as client:
        results = [bytes(client.echo(data, 12, 10, FMT).pixels)
                   for data in (image, image.tobytes(), bytearray(image.tobytes()), memoryview(image))]
    assert all(r == image.tobytes() for r in results)


def test_failing_progress_callback_cancels_and_stale_replies_are_ignored(daemon):
    big = pixels.encode(random_image(256, 320, 5), None, FMT)
    small = pixels.encode(random_image(9, 11, 6), None, FMT)

    def progress(done, total, message):
        if done:
            raise RuntimeError("stop here")

    with Client(daemon["endpoint"], timeout=30) as client:
        with pytest.raises(RuntimeError, match="stop here"):
            client.stylize(big, 320, 256, FMT, "mosaic", progress=progress)
        # the cancelled job's error and the cancel's "ok" arrive now, with other ids: ignored
        result = client.stylize(small, 11, 9, FMT, "mosaic", strength=0.0)
        assert bytes(result.pixels) == small.tobytes()
        assert client.ping() > 0


def test_daemon_killed_mid_request_then_restarted_same_client_reconnects(daemon):
    big = pixels.encode(random_image(256, 320, 7), None, FMT)
    proc = daemon["proc"]
    timeout = 3.0
    client = Client(daemon["endpoint"], timeout=timeout)
    assert client.ping() > 0
    killed_at = []

    def kill_on_first_tile(done, total, message):
        if done and not killed_at:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at.append(time.monotonic())

    with pytest.raises(protocol.Unavailable) as err:
        client.stylize(big, 320, 256, FMT, "mosaic", progress=kill_on_first_tile)
    assert time.monotonic() - killed_at[0] < timeout + 2
    assert err.value.code == "timeout" and daemon["endpoint"] in err.value.message
    proc.wait(10)
    stop_daemon(proc)
    with pytest.raises(protocol.Unavailable):  # nothing there now
        client.ping()

    daemon["proc"] = start_daemon(daemon["tmp"], daemon["endpoint"], daemon["models"])
    assert client.ping() > 0
    small = pixels.encode(random_image(9, 11, 8), None, FMT)
    result = client.stylize(small, 11, 9, FMT, "mosaic", strength=0.0)
    assert np.array_equal(np.frombuffer(result.pixels, np.uint8), small.reshape(-1))
    client.close()


def test_a_daemon_silent_mid_job_is_given_up_after_the_keepalive_not_the_timeout(daemon):
    """The daemon re-sends progress every 2 s; a stopped (hung) one is noticed after the keep-alive."""
    big = pixels.encode(random_image(256, 320, 9), None, FMT)
    proc = daemon["proc"]
    stopped = []

    def stop_on_first_tile(done, total, message):
        if done and not stopped:
            os.kill(proc.pid, signal.SIGSTOP)
            stopped.append(True)

    try:
        with Client(daemon["endpoint"], timeout=120) as client:
            with pytest.raises(protocol.TimedOut, match=f"no keep-alive for {KEEPALIVE_TIMEOUT_S:g} s"):
                client.stylize(big, 320, 256, FMT, "mosaic", progress=stop_on_first_tile)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert stopped


RGBA16 = {"dtype": "u16", "channels": "RGBA", "transfer": "srgb"}


def test_a_result_is_checked_for_size_format_and_byte_count():
    def result(width, height, fmt, size):
        return Result({"width": width, "height": height, "format": fmt}, memoryview(bytes(size)))
    result(4, 3, RGBA16, 4 * 3 * 8).check(4, 3, RGBA16)
    result(4, 3, RGBA16, 4 * 3 * 8).check(4, 3, {"dtype": "u16", "channels": "RGBA"})   # transfer defaults to srgb
    for bad, words in [(result(4, 2, RGBA16, 4 * 2 * 8), "returned a 4x2 image; expected 4x3"),
                       (result(4, 3, dict(RGBA16, dtype="f16"), 4 * 3 * 8), "format"),   # same byte count
                       (result(4, 3, dict(RGBA16, transfer="linear"), 4 * 3 * 8), "format"),
                       (result(4, 3, None, 4 * 3 * 8), "format None"),
                       (result(4, 3, RGBA16, 4 * 3 * 8 - 1), "95 bytes for a 4x3 image; expected 96"),
                       (result(4, 3, RGBA16, 4 * 3 * 8 + 8), "104 bytes")]:
        with pytest.raises(protocol.BadPixels, match=words):
            bad.check(4, 3, RGBA16)


def test_a_reply_without_size_or_format_fails_its_check_not_before():
    result = Result({"kind": "result"}, b"")
    assert (result.width, result.height, result.format) == (None, None, None)
    with pytest.raises(protocol.BadPixels):
        result.check(4, 3, RGBA16)
