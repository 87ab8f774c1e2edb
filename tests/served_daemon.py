"""A real daemon subprocess for the test_daemon*.py modules: its fixtures and raw-request helpers.

A module that imports the fixtures gets its own daemon (they are module-scoped), serving the shared
test models plus one with a thumbnail, one corrupt file and one a test corrupts while it serves.
"""

import json
import shutil

import pytest
import zmq
from PIL import Image

from backend import pixels
from backend.client import Client
from daemon_process import daemon_output, start_daemon, stop_daemon
from helpers import make_model, random_image

MAX_PIXELS = 1_000_000
MAX_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def served_models(models_dir, tmp_path_factory):
    """The shared test models plus one with a thumbnail, one corrupt file and one we corrupt later."""
    directory = tmp_path_factory.mktemp("served_models")
    for path in models_dir.iterdir():
        shutil.copy(path, directory / path.name)
    make_model(directory, "with_thumb", "style", 1, seed=7, thumbnail=Image.new("RGB", (300, 200), (200, 30, 40)))
    make_model(directory, "doomed", "style", 1, seed=8)
    make_model(directory, "broken", "style", 1, seed=9)
    weights = directory / "broken.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    return directory


@pytest.fixture(scope="module")
def daemon(served_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("daemon")
    endpoint = f"ipc://{tmp}/s.sock"
    proc = start_daemon(tmp, endpoint, served_models, "--queue", "4", "--max-pixels", str(MAX_PIXELS),
                        "--max-bytes", str(MAX_BYTES))
    proc.endpoint, proc.tmp = endpoint, tmp
    yield proc
    assert stop_daemon(proc) == 0, daemon_output(proc)


@pytest.fixture
def client(daemon):
    with Client(daemon.endpoint, timeout=30) as c:
        yield c


def raw_request(endpoint, frames, timeout=20):
    """Send raw frames on a fresh DEALER; return the final reply (header dict, other frames)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        while sock.poll(timeout * 1000):
            header, *rest = sock.recv_multipart()
            reply = json.loads(header)
            if reply["kind"] != "progress":
                return reply, rest
        pytest.fail(f"no reply to {frames[0][:200]!r}")
    finally:
        sock.close()


def image_request(kind="stylize", width=8, height=6, fmt=None, **fields):
    fmt = fmt or {"dtype": "u8", "channels": "RGBA"}
    header = {"v": 1, "id": "req-1", "kind": kind, "width": width, "height": height, "format": fmt, **fields}
    if kind == "stylize":
        header.setdefault("model", "mosaic")
    return header


def encode_header(header):
    return json.dumps(header).encode()


def big_job(width=320, height=256):
    fmt = {"dtype": "u8", "channels": "RGBA"}
    return pixels.encode(random_image(height, width, 1), None, fmt), width, height, fmt
