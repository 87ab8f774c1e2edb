"""Bad input to a real daemon gets an error reply and the daemon keeps serving; replies too big
for their limits are trimmed (info) or refused with a reason (the client)."""

import json
import threading

import pytest
import zmq

from backend import protocol
from backend.client import Client
from served_daemon import MAX_BYTES, encode_header, image_request, raw_request
from served_daemon import client, daemon, served_models  # noqa: F401  (pytest fixtures)


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
