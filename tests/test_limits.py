"""Resource limits: per-request pixel and byte limits, the bounded queue, fairness across clients,
and the idle-connection policy (a client that goes away, or falls silent, loses its jobs)."""

import json
import logging
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import zmq

from backend import pixels
from backend.client import Client
from backend.engine import Engine
from backend.model_store import ModelStore
from backend.daemon.server import Daemon
from daemon_process import REPO, daemon_output, start_daemon, stop_daemon
from helpers import random_image

MAX_PIXELS, MAX_BYTES = 4096, 24_000
U8 = {"dtype": "u8", "channels": "RGBA"}


@pytest.fixture(scope="module")
def daemon(models_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    endpoint = f"ipc://{tmp}/limits.sock"
    proc = start_daemon(tmp, endpoint, models_dir, "--max-pixels", str(MAX_PIXELS), "--max-bytes", str(MAX_BYTES),
                        "--queue", "2")
    proc.endpoint = endpoint
    yield proc
    assert stop_daemon(proc) == 0, daemon_output(proc)


class RawClient:
    """A DEALER socket that sends requests and collects every reply, in arrival order."""

    def __init__(self, endpoint):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def send(self, request_id, kind="stylize", width=8, height=8, fmt=U8, frames=None, **fields):
        header = {"v": 1, "id": request_id, "kind": kind, "width": width, "height": height, "format": fmt, **fields}
        if kind == "stylize":
            header.setdefault("model", "mosaic")
        if frames is None:
            frames = [bytes(pixels_in(width, height, fmt))]
        self.socket.send_multipart([json.dumps(header).encode(), *frames])

    def final(self, timeout=60):
        """The next reply that is not progress (header dict)."""
        while self.socket.poll(timeout * 1000):
            reply = json.loads(self.socket.recv_multipart()[0])
            if reply["kind"] != "progress":
                return reply
        pytest.fail("no reply")

    def close(self):
        self.socket.close()


def pixels_in(width, height, fmt):
    return pixels.encode(random_image(height, width, width + height), None, fmt).tobytes()


# ---- per-request limits and the bounded queue -----------------------------------------------------

@pytest.mark.parametrize("request_fields, outcome", [
    ({"width": 64, "height": 64}, "result"),                                   # exactly max_pixels
    ({"width": 65, "height": 64}, "too_large"),                                # one row more
    ({"width": 64, "height": 64, "mask": True}, "result"),                     # 16384 + 4096 bytes + header < 24000
    ({"width": 64, "height": 64, "fmt": {"dtype": "u16", "channels": "RGBA"}}, "too_large"),  # 32768 bytes
    ({"kind": "upscale", "width": 32, "height": 32, "scale": 2}, "result"),    # output exactly max_pixels
    ({"kind": "upscale", "width": 33, "height": 32, "scale": 2}, "too_large"),
    ({"kind": "echo", "width": 65, "height": 64}, "too_large"),
])
def test_pixel_and_byte_limits_hold_exactly_at_the_boundary(daemon, request_fields, outcome):
    client = RawClient(daemon.endpoint)
    try:
        fields = dict(request_fields)
        frames = None
        if fields.get("mask"):
            frames = [pixels_in(fields["width"], fields["height"], U8), bytes(fields["width"] * fields["height"])]
        client.send("limit", frames=frames, **fields)
        reply = client.final()
    finally:
        client.close()
    assert reply.get("code", reply["kind"]) == outcome, reply
    if outcome == "too_large":
        assert "--max-" in reply["message"]


@pytest.mark.parametrize("request_fields, outcome, words", [
    # the pixel limit holds for the model that runs, whatever scale the request states (issue 19, item 4)
    ({"scale": 2, "model": "sr_x8"}, "bad_request", "upscales x8, not x2"),
    ({"model": "sr_x8"}, "too_large", "x8 of 32x32"),
    ({"scale": None, "model": "sr_x8"}, "too_large", "x8 of 32x32"),
    ({"model": "mosaic"}, "bad_request", "not a super-resolution model"),
    ({"model": "sr_x2"}, "result", ""),
    ({"scale": 2}, "result", ""),
])
def test_the_upscale_limit_is_checked_against_the_model_that_runs(daemon, request_fields, outcome, words):
    client = RawClient(daemon.endpoint)
    try:
        client.send("up", kind="upscale", width=32, height=32, **request_fields)
        reply = client.final()
    finally:
        client.close()
    assert reply.get("code", reply["kind"]) == outcome and words in reply.get("message", ""), reply
    if outcome == "result":
        assert (reply["width"], reply["height"]) == (64, 64)


@pytest.mark.parametrize("request_fields, words", [   # issue 19, item 6
    ({"fmt": {"dtype": ["u8"], "channels": "RGBA"}}, "dtype must be a string"),
    ({"fmt": {"dtype": "u8", "channels": {"R": 1}}}, "channels must be a string"),
    ({"fmt": {"dtype": "u8", "transfer": ["srgb"]}}, "transfer must be a string"),
    ({"preserve_colors": "no"}, "'preserve_colors' must be true or false"),
    ({"preserve_colors": 0}, "'preserve_colors' must be true or false"),
    ({"kind": "upscale", "scale": 2, "histogram_match": "no"}, "'histogram_match' must be true or false"),
])
def test_fields_of_the_wrong_type_are_bad_requests(daemon, request_fields, words):
    client = RawClient(daemon.endpoint)
    try:
        client.send("typed", frames=[bytes(8 * 8 * 4)], **request_fields)
        reply = client.final()
    finally:
        client.close()
    assert reply.get("code") == "bad_request" and words in reply["message"], reply


def test_the_queue_holds_at_most_its_limit_and_then_says_busy(daemon):
    client = RawClient(daemon.endpoint)
    try:
        for n in range(5):    # two wait (and one may already run): the rest are refused
            client.send(f"job-{n}", width=64, height=64)
        finals = [client.final() for _ in range(5)]
    finally:
        client.close()
    outcomes = [reply.get("code", reply["kind"]) for reply in finals]
    assert outcomes.count("result") in (2, 3) and outcomes.count("busy") == 5 - outcomes.count("result"), finals
    assert all("2 jobs waiting" in reply["message"] for reply in finals if reply["kind"] == "error")


# ---- fairness -------------------------------------------------------------------------------------

def test_a_second_client_is_served_between_the_first_ones_jobs(models_dir, tmp_path):
    endpoint = f"ipc://{tmp_path}/fair.sock"
    proc = start_daemon(tmp_path, endpoint, models_dir)
    a, b = RawClient(endpoint), RawClient(endpoint)
    try:
        for client in (a, b):  # both connected first: a slow handshake would let B1 arrive after A1 ran
            client.send("hello", kind="ping")
            assert client.final()["kind"] == "pong"
        a.send("A1", width=320, height=256)        # several tiles: the others queue behind it
        # A1 queued, with nothing ahead, before anything else is sent: the daemon's socket takes
        # waiting messages from its connections in turns, so B1 could otherwise be read (and run) first.
        assert json.loads(a.socket.recv_multipart()[0])["message"] == "starting"
        for n in (2, 3, 4):
            a.send(f"A{n}")
        b.send("B1")
        finished = []
        poller = zmq.Poller()
        for client in (a, b):
            poller.register(client.socket, zmq.POLLIN)
        while len(finished) < 5:
            events = dict(poller.poll(60_000))
            assert events, "no reply"
            for client in (a, b):
                if client.socket in events:
                    reply = json.loads(client.socket.recv_multipart()[0])
                    if reply["kind"] == "result":
                        finished.append(reply["id"])
    finally:
        a.close()
        b.close()
        assert stop_daemon(proc) == 0
    assert finished == ["A1", "B1", "A2", "A3", "A4"]


# ---- idle-connection policy -----------------------------------------------------------------------

def test_jobs_of_a_client_that_disconnects_are_cancelled_not_run(models_dir, tmp_path):
    endpoint = f"ipc://{tmp_path}/gone.sock"
    proc = start_daemon(tmp_path, endpoint, models_dir)
    try:
        gone = RawClient(endpoint)
        gone.send("long", width=320, height=256)
        gone.send("queued-1")
        gone.send("queued-2")
        while json.loads(gone.socket.recv_multipart()[0]).get("done", 0) < 1:   # the first tile is done
            pass
        gone.close()
        with Client(endpoint, timeout=30) as other:   # served next; the gone client's jobs never run
            data = pixels_in(16, 16, U8)
            assert bytes(other.stylize(data, 16, 16, U8, "mosaic", strength=0.0).pixels) == data
        log = daemon_output(proc)
    finally:
        assert stop_daemon(proc) == 0
    for job_id in ("long", "queued-1", "queued-2"):
        assert re.search(rf"went away: stylize {job_id} cancelled", log), log
        assert f"stylize {job_id} done" not in log
    assert re.search(r"stylize long failed at step \d+ of \d+: cancelled", log)


def test_a_frozen_client_is_dropped_after_the_peer_timeout_and_its_job_cancelled(models_dir, tmp_path, caplog):
    """SIGSTOP freezes the client's ZeroMQ thread too: it stops answering the daemon's heartbeats."""
    caplog.set_level(logging.INFO, logger="brushwork")
    store = ModelStore([models_dir], include_bundled=False, include_user=False)
    engine = Engine(store, device="cpu", precision="fp32", tile_size=128)
    endpoint = f"ipc://{tmp_path}/frozen.sock"
    daemon = Daemon(engine, store, endpoint, peer_timeout=1.0)
    daemon.bind()
    serving = threading.Thread(target=daemon.serve)
    serving.start()
    script = ("import sys; from backend.client import Client; from backend import pixels; import numpy as np\n"
              "data = np.zeros((1024, 1024, 4), np.uint8)\n"
              f"Client({endpoint!r}, timeout=600).stylize(data, 1024, 1024, {U8!r}, 'mosaic', "
              "progress=lambda d, t, m: d and print('working', flush=True))\n")
    frozen = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert frozen.stdout.readline().strip() == "working"
        frozen.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while daemon.queue.snapshot()[0] is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.queue.snapshot() == (None, [])
        with Client(endpoint, timeout=30) as other:
            assert other.ping() > 0
    finally:
        frozen.kill()
        frozen.wait()
        daemon.stop()
        serving.join(60)
    messages = [record.getMessage() for record in caplog.records]
    assert any("went away: stylize" in m for m in messages), messages
    assert any(re.search(r"stylize \w+ failed at step \d+ of \d+: cancelled", m) for m in messages), messages
    assert not any(re.search(r"stylize \w+ done in", m) for m in messages), messages


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_idle_connections_cannot_lock_out_a_client_under_a_low_descriptor_limit(models_dir, tmp_path):
    """300 idle TCP connections to a daemon limited to 256 descriptors: a client still gets in at
    once, not after ZeroMQ's handshake timeout (issue 19, item 5)."""
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = start_daemon(tmp_path, endpoint, models_dir, listen=["--tcp", f"127.0.0.1:{port}"])
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (256, 256))
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        with Client(endpoint, timeout=5) as client:   # well below the handshake timeout
            assert client.ping() > 0
            assert client.stylize(bytes(16 * 12 * 4), 16, 12, U8, "mosaic", strength=0.0).width == 16
        assert "idle connection" in daemon_output(proc)
    finally:
        for connection in idle:
            connection.close()
        assert stop_daemon(proc) == 0, daemon_output(proc)[-3000:]
