"""The daemon as a real subprocess, over real ZeroMQ, with the real client and engine: round trips
against the in-process engine, info, concurrency and cancel. Bad input: test_daemon_bad_input.py;
starting, refusing and stopping: test_daemon_lifecycle.py.
"""

import json
import re
import threading

import numpy as np
import pytest
import zmq

from backend import pixels, protocol
from backend.client import Client
from backend.engine import Engine
from backend.model_store import ModelStore
from daemon_process import daemon_output
from helpers import random_image
from served_daemon import MAX_BYTES, MAX_PIXELS, big_job, encode_header, image_request
from served_daemon import client, daemon, served_models  # noqa: F401  (pytest fixtures)

FORMATS = [(dtype, channels) for dtype in ("u8", "u16", "f16", "f32") for channels in ("RGBA", "BGRA")]


@pytest.fixture(scope="module")
def engine(served_models):
    # the daemon serves the bundled models too, so its default SR model is one of theirs
    store = ModelStore([served_models], include_bundled=True, include_user=False)
    return Engine(store, device="cpu", precision="fp32", tile_size=128)


def make_input(width, height, fmt, with_alpha, with_mask, seed):
    rgb = random_image(height, width, seed)
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0, 1, (height, width)).astype(np.float32) if with_alpha else None
    alpha_out = alpha if "A" in fmt["channels"] else None
    buf = pixels.encode(rgb, alpha_out, fmt)
    mask = rng.integers(0, 256, width * height, dtype=np.uint8).tobytes() if with_mask else None
    return buf, mask


def in_process(engine, kind, buf, width, height, fmt, mask, **options):
    rgb, alpha = pixels.decode(buf, width, height, fmt)
    mask = pixels.decode_mask(mask, width, height) if mask is not None else None
    run = engine.stylize if kind == "stylize" else engine.upscale
    rgb, alpha = run(rgb, alpha, mask=mask, **options)
    return pixels.encode(rgb, alpha, fmt)


@pytest.mark.parametrize("kind", ["stylize", "upscale"])
@pytest.mark.parametrize("variant", ["opaque", "alpha+mask"])
@pytest.mark.parametrize("dtype, channels", FORMATS + [("u16", "RGB"), ("f16", "BGR")])
def test_round_trip_matches_in_process_engine(client, engine, kind, variant, dtype, channels):
    fmt = {"dtype": dtype, "channels": channels, "transfer": "srgb"}
    width, height = (40, 36) if kind == "stylize" else (12, 10)
    with_extra = variant == "alpha+mask"
    buf, mask = make_input(width, height, fmt, with_extra, with_extra, seed=len(dtype + channels))
    if kind == "stylize":
        options = {"model": "starry_night", "strength": 0.8, "preserve_colors": with_extra}
        result = client.stylize(buf, width, height, fmt, mask=mask, **options)
    else:
        options = {"model": None, "scale": 2, "histogram_match": with_extra}
        result = client.upscale(buf, width, height, fmt, mask=mask, **options)
    expected = in_process(engine, kind, buf, width, height, fmt, mask, **options)
    scale = 1 if kind == "stylize" else 2
    assert (result.width, result.height) == (width * scale, height * scale)
    assert result.format == fmt
    assert bytes(result.pixels) == expected.tobytes()


def test_linear_transfer_and_progress_per_tile(client, engine):
    fmt = {"dtype": "f32", "channels": "RGBA", "transfer": "linear"}
    width, height = 200, 100  # several 128-pixel tiles
    buf, _ = make_input(width, height, fmt, True, False, seed=3)
    seen = []
    result = client.stylize(buf, width, height, fmt, "mosaic", progress=lambda *p: seen.append(p))
    expected = in_process(engine, "stylize", buf, width, height, fmt, None, model="mosaic")
    np.testing.assert_array_equal(np.frombuffer(result.pixels, np.float32), expected.reshape(-1))
    tiles = [(done, total) for done, total, _ in seen if total]
    assert len(tiles) >= 2 and tiles[-1][0] == tiles[-1][1]
    assert [d for d, _ in tiles] == sorted(d for d, _ in tiles)


def test_echo_returns_the_same_bytes(client):
    fmt = {"dtype": "u16", "channels": "BGRA"}
    data = np.random.default_rng(5).integers(0, 65536, 17 * 9 * 4, dtype=np.uint16).tobytes()
    result = client.echo(data, 17, 9, fmt)
    assert bytes(result.pixels) == data and (result.width, result.height) == (17, 9)


def test_info_lists_models_thumbnails_problems_and_limits(client):
    import base64
    info = client.info(thumbnails=True)
    by_name = {m["name"]: m for m in info["models"]}
    assert {"mosaic", "starry_night", "sr_x2", "sr_x4", "sr_x8", "with_thumb"} <= set(by_name)
    assert by_name["sr_x4"]["kind"] == "sr" and by_name["sr_x4"]["scale"] == 4
    assert by_name["mosaic"]["display_name"] == "Mosaic"
    assert "thumbnail_png" not in by_name["mosaic"]
    assert base64.b64decode(by_name["with_thumb"]["thumbnail_png"]).startswith(b"\x89PNG")
    assert any("broken" in p for p in info["problems"])
    assert info["limits"] == {"max_pixels": MAX_PIXELS, "max_bytes": MAX_BYTES, "queue": 4}
    assert info["device"] == "cpu" and info["precision"] == "fp32"
    assert "thumbnail_png" not in {k for m in client.info()["models"] for k in m}


# ---- concurrency, fairness, cancel --------------------------------------------------------

def test_three_clients_fifty_requests_each_get_their_own_replies(daemon):
    """Every reply must carry the requester's own image: strength 0 returns the input exactly."""
    fmt = {"dtype": "u8", "channels": "RGB"}
    failures = []

    def run(client_no):
        rng = np.random.default_rng(client_no)
        with Client(daemon.endpoint, timeout=60) as c:
            for i in range(50):
                width, height = 16 + client_no, 16 + i % 5
                data = rng.integers(0, 256, width * height * 3, dtype=np.uint8).tobytes()
                if i % 2:
                    result = c.echo(data, width, height, fmt)
                else:
                    result = c.stylize(data, width, height, fmt, "mosaic", strength=0.0)
                if bytes(result.pixels) != data or (result.width, result.height) != (width, height):
                    failures.append((client_no, i))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_cancel_stops_a_running_job_within_a_tile_and_ping_answers_meanwhile(daemon, client):
    buf, width, height, fmt = big_job()
    seen, pings = [], []
    started = threading.Event()

    def progress(done, total, message):
        seen.append((done, total))
        if done >= 1:
            started.set()

    def ping_while_running():
        started.wait(60)
        with Client(daemon.endpoint, timeout=10) as other:
            pings.append(other.ping())
            pings.append(other.info()["version"])

    pinger = threading.Thread(target=ping_while_running)
    pinger.start()
    cancel_at = []

    def should_cancel():
        if len(pings) == 2 and not cancel_at:
            cancel_at.append(len(seen))
        return bool(cancel_at)

    with pytest.raises(protocol.Cancelled):
        client.stylize(buf, width, height, fmt, "mosaic", progress=progress, should_cancel=should_cancel)
    pinger.join()
    assert len(pings) == 2, "ping/info must be answered while a job runs"
    # Counted where the cancel arrives, in the daemon's log: progress messages still in flight
    # make any count on the client's side depend on how busy the machine is.
    log = daemon_output(daemon)
    job_id, arrived = re.findall(r"cancelling stylize (\w+) at step (\d+) of \d+", log)[-1]
    stopped, total = re.search(rf"stylize {job_id} failed at step (\d+) of (\d+): cancelled", log).groups()
    assert int(stopped) - int(arrived) <= 1, "the job must stop within one tile of the cancel"
    assert int(stopped) < int(total), "the job must not have run to its end"
    assert client.ping() > 0


def test_cancel_a_queued_job_and_queue_overflow_is_busy(daemon):
    buf, width, height, fmt = big_job()
    small = pixels.encode(random_image(8, 8, 2), None, fmt)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    try:
        def send(rid, data, w, h):
            header = image_request(width=w, height=h, fmt=fmt, id=rid)
            sock.send_multipart([encode_header(header), data])

        send("long", buf, width, height)
        for n in range(6):  # queue limit is 4
            send(f"small-{n}", small, 8, 8)
        sock.send(encode_header({"v": 1, "id": "c1", "kind": "cancel", "target": "small-0"}))
        sock.send(encode_header({"v": 1, "id": "c2", "kind": "cancel", "target": "long"}))
        finals = {}
        while len(finals) < 9 and sock.poll(60_000):
            header, *_ = sock.recv_multipart()
            reply = json.loads(header)
            if reply["kind"] != "progress":
                finals[reply["id"]] = reply
    finally:
        sock.close()
    assert finals["c1"] == {"v": 1, "id": "c1", "kind": "ok", "found": True}
    assert finals["c2"]["kind"] == "ok"
    assert finals["small-0"]["code"] == "cancelled"
    assert finals["long"]["code"] == "cancelled"
    codes = [finals[f"small-{n}"].get("code", finals[f"small-{n}"]["kind"]) for n in range(1, 6)]
    assert "busy" in codes and "result" in codes


