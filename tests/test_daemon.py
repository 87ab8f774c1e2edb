"""The daemon as a real subprocess, over real ZeroMQ, with the real client and engine."""

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq
from PIL import Image

from backend import pixels, protocol
from backend.client import Client
from backend.engine import Engine
from backend.model_store import ModelStore
from daemon_process import REPO, daemon_env, daemon_output, start_daemon, stop_daemon
from helpers import make_model, random_image

MAX_PIXELS = 1_000_000
MAX_BYTES = 4 * 1024 * 1024
FORMATS = [(dtype, channels) for dtype in ("u8", "u16", "f16", "f32") for channels in ("RGBA", "BGRA")]


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


@pytest.fixture(scope="module")
def engine(served_models):
    # the daemon serves the bundled models too, so its default SR model is one of theirs
    store = ModelStore([served_models], include_bundled=True, include_user=False)
    return Engine(store, device="cpu", precision="fp32", tile_size=128)


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


# ---- round trips against the in-process engine ------------------------------------------

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


def big_job(width=320, height=256):
    fmt = {"dtype": "u8", "channels": "RGBA"}
    return pixels.encode(random_image(height, width, 1), None, fmt), width, height, fmt


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


# ---- bad input --------------------------------------------------------------------------

BAD_REQUESTS = {
    "non-JSON header": ([b"\x00\x01 not json"], "bad_request", None),
    "JSON array header": ([b"[1, 2]"], "bad_request", None),
    "empty header": ([b""], "bad_request", None),
    "missing id": ([encode_header({"v": 1, "kind": "ping"})], "bad_request", None),
    "wrong version": ([encode_header({"v": 99, "id": "x", "kind": "ping"})], "bad_request", "x"),
    "unknown kind": ([encode_header({"v": 1, "id": "x", "kind": "paint"})], "unknown_kind", "x"),
    "train_style without image": ([encode_header({"v": 1, "id": "x", "kind": "train_style"})], "bad_request", "x"),
    "cancel without target": ([encode_header({"v": 1, "id": "x", "kind": "cancel"})], "bad_request", "x"),
    "truncated pixels": ([encode_header(image_request()), bytes(8 * 6 * 4 - 1)], "bad_pixels", "req-1"),
    "too many bytes": ([encode_header(image_request()), bytes(8 * 6 * 4 + 4)], "bad_pixels", "req-1"),
    "missing pixel frame": ([encode_header(image_request())], "bad_request", "req-1"),
    "garbage extra frames": ([encode_header(image_request()), bytes(192), b"junk", b"more"], "bad_request",
                             "req-1"),
    "mask declared, missing": ([encode_header(image_request(mask=True)), bytes(192)], "bad_request", "req-1"),
    "mask of wrong size": ([encode_header(image_request(mask=True)), bytes(192), bytes(47)], "bad_pixels",
                           "req-1"),
    "zero width": ([encode_header(image_request(width=0)), b""], "bad_request", "req-1"),
    "negative height": ([encode_header(image_request(height=-6)), b""], "bad_request", "req-1"),
    "huge size": ([encode_header(image_request(width=100_000, height=100_000)), b"x"], "too_large", "req-1"),
    "upscale output too large": ([encode_header(image_request("upscale", 400, 400, scale=4)), bytes(640_000)],
                                 "too_large", "req-1"),
    "request over max bytes": ([encode_header(image_request(width=1024, height=1025)), bytes(1024 * 1025 * 4)],
                               "too_large", "req-1"),
    "unknown dtype": ([encode_header(image_request(fmt={"dtype": "u4"})), bytes(48)], "bad_request", "req-1"),
    "missing model": ([encode_header(image_request(model=None)), bytes(192)], "bad_request", "req-1"),
    "strength out of range": ([encode_header(image_request(strength=3)), bytes(192)], "bad_request", "req-1"),
    "unknown model": ([encode_header(image_request(model="no_such_model")), bytes(192)], "unknown_model",
                      "req-1"),
    "corrupt model file": ([encode_header(image_request(model="broken")), bytes(192)], "unknown_model", "req-1"),
    "SR model for stylize": ([encode_header(image_request(model="sr_x2")), bytes(192)], "bad_request", "req-1"),
    "no SR model for x3": ([encode_header(image_request("upscale", scale=3)), bytes(192)], "unknown_model",
                           "req-1"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_get_an_error_and_the_daemon_keeps_serving(daemon, client, case):
    frames, code, reply_id = BAD_REQUESTS[case]
    reply, rest = raw_request(daemon.endpoint, frames)
    assert (reply["kind"], reply["code"], reply["id"]) == ("error", code, reply_id), reply
    assert reply["message"] and "Traceback" not in reply["message"] and rest == []
    assert client.ping() > 0


def test_frame_far_over_the_hard_cap_drops_only_that_connection(daemon, client):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    sock.send_multipart([encode_header(image_request(width=2048, height=1024)), bytes(MAX_BYTES * 2)])
    assert not sock.poll(1000), "ZMQ_MAXMSGSIZE must stop a frame this big before it is read"
    sock.close()
    assert client.ping() > 0


def test_model_corrupted_while_serving_gives_an_error_not_a_crash(daemon, client, served_models):
    fmt = {"dtype": "u8", "channels": "RGBA"}
    data = bytes(16 * 16 * 4)
    client.stylize(data, 16, 16, fmt, "doomed")
    weights = served_models / "doomed.safetensors"
    weights.write_bytes(b"garbage" + weights.read_bytes()[7:])
    with pytest.raises(protocol.BrushworkError) as err:
        client.stylize(data, 16, 16, fmt, "doomed")
    assert err.value.code in ("unknown_model", "model_error")
    assert any("doomed" in p for p in client.info()["problems"])
    assert client.ping() > 0


# ---- lifecycle --------------------------------------------------------------------------

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




# ---- hostile endpoints and replies (issue 19, items 6 and 8) -------------------------------------

def test_an_abstract_ipc_endpoint_is_refused_with_a_reason_not_a_traceback(tmp_path):
    done = run_serve(tmp_path, "--endpoint", f"ipc://@brushwork-test-{os.getpid()}", "--device", "cpu")
    assert done.returncode == 1, done.stdout
    assert "abstract socket" in done.stderr and "every local user" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_info_is_capped_leaving_out_thumbnails_then_recipes_then_models():
    from backend.daemon.info_reply import fit_info_reply
    model = {"name": "m", "thumbnail_png": "A" * 300_000, "recipe": {"notes": "r" * 300_000}, "data": {}}
    reply = fit_info_reply({"kind": "info", "models": [dict(model)]}, limit=1_000_000)
    assert "left_out" not in reply and reply["models"][0]["thumbnail_png"]
    reply = fit_info_reply({"kind": "info", "models": [dict(model) for _ in range(3)]}, limit=1_000_000)
    assert "thumbnail_png" not in reply["models"][0] and "thumbnails" in reply["left_out"]
    assert len(reply["models"]) == 3 and len(protocol.encode_header(reply)) <= 1_000_000
    reply = fit_info_reply({"kind": "info", "models": [dict(model) for _ in range(40)]}, limit=100_000)
    assert "recipe" not in reply["models"][0] and len(protocol.encode_header(reply)) <= 100_000
    reply = fit_info_reply({"kind": "info", "models": [{"name": "x" * 10_000} for _ in range(40)]}, limit=100_000)
    assert 0 < len(reply["models"]) < 40 and "of 40 models" in reply["left_out"]
    assert len(protocol.encode_header(reply)) <= 100_000


def test_the_client_says_when_it_refuses_an_oversized_reply():
    """A reply over the client's 16 MiB limit used to be dropped and reported as 'no daemon answering'."""
    context = zmq.Context.instance()
    server = context.socket(zmq.ROUTER)
    port = server.bind_to_random_port("tcp://127.0.0.1")

    def answer():
        if server.poll(20_000):
            identity, request = server.recv_multipart()
            request_id = json.loads(request)["id"]
            server.send_multipart([identity, json.dumps({"kind": "info", "id": request_id,
                                                         "models": "x" * (17 << 20)}).encode()])

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=10) as client:
            with pytest.raises(protocol.TooLarge) as err:
                client.info()
        assert "refused" in err.value.message and str(protocol.MAX_REPLY_HEADER_BYTES) in err.value.message
    finally:
        thread.join()
        server.close(linger=0)


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
