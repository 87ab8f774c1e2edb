"""Many clients, each with several requests in flight, against one daemon; every reply is checked.

Used by tests/test_load_daemon.py and benchmarks/load_daemon.py. Each client is a thread with
its own raw DEALER socket that keeps ``window`` requests outstanding: ``echo`` (answered by the
daemon's loop) and ``stylize`` at strength 0 (a real job through the queue and the worker that
must return its input exactly), each with a payload of its own. A ``busy`` reply is counted and
the request is sent again (with a new id) a moment later. Every request must end with exactly one
``result`` carrying its own payload: anything else is counted as lost, duplicated or mismatched.
"""

import json
import threading
import time
import uuid

import numpy as np
import zmq

FORMAT = {"dtype": "u8", "channels": "RGBA", "transfer": "srgb"}
RETRY_DELAY_S = 0.02


class ClientLoad:
    """One client's requests and what became of them."""

    def __init__(self, requests, window, seed):
        self.requests, self.window = requests, window
        self.rng = np.random.default_rng(seed)
        self.latencies = {"echo": [], "stylize": []}   # seconds, per answered attempt
        self.busy = self.lost = self.duplicated = self.mismatched = self.done = 0
        self.errors = []      # (code, message) of errors other than busy

    def make_request(self, index):
        kind = "echo" if index % 2 else "stylize"
        width, height = int(self.rng.integers(8, 25)), int(self.rng.integers(8, 25))
        payload = self.rng.integers(0, 256, width * height * 4, dtype=np.uint8).tobytes()
        header = {"v": 1, "kind": kind, "width": width, "height": height, "format": FORMAT}
        if kind == "stylize":
            header.update(model="mosaic", strength=0.0)
        return header, payload


def run_client(endpoint, load, timeout=30.0):
    """Send ``load.requests`` requests, ``load.window`` at a time; fill in ``load``'s counters."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    outstanding = {}     # request id -> (header, payload, time sent)
    retry = []           # (time due, header, payload)
    answered = set()
    next_index = 0

    def send(header, payload):
        request_id = uuid.uuid4().hex
        socket.send_multipart([json.dumps(dict(header, id=request_id)).encode(), payload])
        outstanding[request_id] = (header, payload, time.monotonic())

    try:
        while next_index < load.requests or outstanding or retry:
            now = time.monotonic()
            while retry and retry[0][0] <= now:
                send(*retry.pop(0)[1:])
            while next_index < load.requests and len(outstanding) + len(retry) < load.window:
                send(*load.make_request(next_index))
                next_index += 1
            if not socket.poll(timeout * 1000 if not retry else RETRY_DELAY_S * 1000):
                if not retry:
                    load.lost += len(outstanding)
                    return
                continue
            frames = socket.recv_multipart()
            reply = json.loads(frames[0])
            if reply["kind"] == "progress":
                continue
            if reply["id"] not in outstanding:
                load.duplicated += reply["id"] in answered
                load.mismatched += reply["id"] not in answered
                continue
            header, payload, sent = outstanding.pop(reply["id"])
            answered.add(reply["id"])
            if reply["kind"] == "error" and reply["code"] == "busy":
                load.busy += 1
                retry.append((time.monotonic() + RETRY_DELAY_S, header, payload))
            elif reply["kind"] == "error":
                load.errors.append((reply["code"], reply["message"]))
            elif (reply["kind"] != "result" or frames[1:] != [payload]
                  or (reply["width"], reply["height"]) != (header["width"], header["height"])):
                load.mismatched += 1
            else:
                load.latencies[header["kind"]].append(time.monotonic() - sent)
                load.done += 1
        while socket.poll(300):     # nothing more may arrive: a second final reply is a duplicate
            reply = json.loads(socket.recv_multipart()[0])
            if reply["kind"] != "progress":
                load.duplicated += 1
    finally:
        socket.close()


def run_load(endpoint, clients=4, requests=250, window=4, seed=0):
    """Run ``clients`` concurrent clients; return their ClientLoad records and the wall time."""
    loads = [ClientLoad(requests, window, seed + n) for n in range(clients)]
    threads = [threading.Thread(target=run_client, args=(endpoint, load)) for load in loads]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return loads, time.monotonic() - started


def summary(loads, wall):
    """Totals and latency percentiles (ms) of a run, as a dict."""
    totals = {key: sum(getattr(load, key) for load in loads)
              for key in ("done", "busy", "lost", "duplicated", "mismatched")}
    totals["errors"] = [error for load in loads for error in load.errors]
    totals["wall_s"] = wall
    for kind in ("echo", "stylize"):
        values = np.array([v for load in loads for v in load.latencies[kind]]) * 1000
        if values.size:
            totals[f"{kind}_p50_ms"], totals[f"{kind}_p99_ms"] = np.percentile(values, [50, 99])
    return totals
