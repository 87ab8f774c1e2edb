"""Malformed, truncated, oversized and random requests for a real daemon, and what its replies must be.

Used by tests/test_fuzz_daemon.py and benchmarks/fuzz_daemon.py. A :class:`Fuzzer` sends each
message on a raw DEALER socket (a fresh one every ``messages_per_connection`` messages, so the
daemon sees many client identities), waits for the final reply and checks it:

* every message gets exactly one final reply, within ``timeout`` seconds;
* an ``error`` reply has a known code other than ``internal`` (which would mean a bug) and a
  message without a traceback;
* the reply's ``id`` is the request's when the header parses as a JSON object with a non-empty
  string ``id`` (the daemon's rule), else null.

The daemon under test should run with ``FUZZ_DAEMON_ARGS``: a 1 MiB request limit, so oversized
requests are cheap to send and stay below ZeroMQ's hard frame cap (which drops the connection
without a reply), and a 64 Ki-pixel image limit, so the requests that are valid run quickly.
"""

import collections
import json

import zmq
from hypothesis import strategies as st

from backend import protocol

MAX_BYTES = 1 << 20
MAX_PIXELS = 1 << 16
FUZZ_DAEMON_ARGS = ("--max-bytes", str(MAX_BYTES), "--max-pixels", str(MAX_PIXELS), "--queue", "4")
FINAL_KINDS = {"error", "pong", "info", "result", "ok"}

# ---- headers: a plausible request, then up to three fields deleted or given odd values ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
FIELDS = {   # field -> (plausible values, odd values)
    "v": (st.just(1), st.sampled_from([0, 2, "1", 1.5, None])),
    "id": (st.text(min_size=1, max_size=16), st.sampled_from(["", None, 7, ["x"], "\ud800", "a\udfff"])),
    "kind": (st.sampled_from(protocol.REQUEST_KINDS), st.sampled_from([*protocol.REPLY_KINDS, "", "STYLIZE"])
             | st.text(max_size=8)),
    "width": (st.integers(1, 40), st.sampled_from([0, -1, 2**16, 10**6, 2**31, 2**63, 2**64 + 1, 1.0, True, "8"])),
    "height": (st.integers(1, 40), st.sampled_from([0, -6, 2**16, 10**7, 2**32, 1e300, False, "6"])),
    "format": (st.fixed_dictionaries({"dtype": st.sampled_from(sorted(protocol.DTYPE_SIZES))},
                                     optional={"channels": st.sampled_from(protocol.CHANNEL_ORDERS),
                                               "transfer": st.sampled_from(protocol.TRANSFERS)}),
               st.fixed_dictionaries({}, optional={"dtype": st.sampled_from(["u4", "U8", "", "f64", ["u8"], {"u8": 1}]),
                                                   "channels": st.sampled_from(["ARGB", "RGBAA", "", 4, ["RGBA"]]),
                                                   "transfer": st.sampled_from(["pq", "", None, ["srgb"]])})),
    "model": (st.sampled_from(["mosaic", "starry_night", "sr_x2", "sr_x4", "sr_x8", "no_such"]),
              st.sampled_from(["", "../mosaic", "/etc/passwd", "mosaic\x00", 5])),
    "scale": (st.sampled_from([2, 4, 8, 3]), st.sampled_from([0, -4, 16, 2**40, 2.0, "4"])),
    "strength": (st.floats(0, 1), st.sampled_from([-0.1, 1.5, float("nan"), float("inf"), "1", True])),
    "preserve_colors": (st.booleans(), st.sampled_from([1, "yes", "no"])),
    "histogram_match": (st.booleans(), st.sampled_from([0, "no"])),
    "mask": (st.booleans(), st.sampled_from([1, "true", None])),
    "target": (st.text(min_size=1, max_size=16), st.sampled_from([None, 3])),
    "thumbnails": (st.booleans(), st.sampled_from(["yes", 2])),
    "name": (st.text(min_size=1, max_size=30), st.sampled_from(["", "-x", "a" * 300, None, "\udc80"])),
    "iterations": (st.integers(1, 3), st.sampled_from([0, -1, 10**9, 2.5])),
}
CORE = ("v", "id", "kind", "width", "height", "format")


@st.composite
def headers(draw):
    header = {key: draw(FIELDS[key][0]) for key in CORE}
    for key in draw(st.lists(st.sampled_from(sorted(set(FIELDS) - set(CORE))), max_size=4, unique=True)):
        header[key] = draw(FIELDS[key][0])
    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        how = draw(st.sampled_from(["delete", "odd", "odd", "random"]))
        if how == "delete":
            header.pop(key, None)
        else:
            header[key] = draw(FIELDS[key][1] if how == "odd" else json_values)
    if draw(st.booleans()):
        header[draw(st.text(max_size=8))] = draw(json_values)   # an unknown field
    return header


def expected_frame_size(header):
    """The pixel frame's byte count that ``header`` declares, or None if it declares none."""
    try:
        width, height = header["width"], header["height"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            return None
        return protocol.frame_size(width, height, header["format"])
    except (KeyError, TypeError, protocol.BrushworkError):
        return None


@st.composite
def binary_frames(draw, header):
    """0-3 frames: the declared pixel (and mask) sizes, near misses, random or oversized ones."""
    declared = expected_frame_size(header) if isinstance(header, dict) else None
    frames = []
    count = 1 + bool(isinstance(header, dict) and header.get("mask") is True)
    for index in range(draw(st.sampled_from([count] * 4 + [0, 1, 2, 3]))):
        choice = draw(st.sampled_from(["declared"] * 4 + ["off", "random", "huge"]))
        if choice in ("declared", "off") and declared is not None and declared <= MAX_BYTES // 2:
            size = declared if index == 0 else header["width"] * header["height"]   # pixels, then a mask
            if choice == "off":
                size = max(0, size + draw(st.sampled_from([-1, 1, -4, 4, -size, size])))
        elif choice == "huge":
            size = draw(st.integers(MAX_BYTES // 2, MAX_BYTES + MAX_BYTES // 2))
        else:
            size = draw(st.integers(0, 64))
        frames.append(bytes(size) if size > 64 else draw(st.binary(min_size=size, max_size=size)))
    return frames


@st.composite
def header_bytes(draw, header):
    """Frame 0 for ``header``: its JSON, or that JSON truncated, corrupted, oversized or not an object."""
    text = json.dumps(header).encode()
    how = draw(st.sampled_from(["exact"] * 20 + ["truncated", "flipped", "oversized", "not_object", "nested",
                                                  "not_utf8", "empty"]))
    if how == "truncated":
        return text[:draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "flipped":
        position = draw(st.integers(0, len(text) - 1))
        return text[:position] + bytes([draw(st.integers(0, 255))]) + text[position + 1:]
    if how == "oversized":
        padded = dict(header, padding="x" * draw(st.integers(protocol.MAX_HEADER_BYTES - 100,
                                                             protocol.MAX_HEADER_BYTES + 100)))
        return json.dumps(padded).encode()
    if how == "not_object":
        return json.dumps(draw(json_values)).encode()
    if how == "nested":  # deep enough to exhaust a recursive JSON parser
        depth = draw(st.integers(1000, protocol.MAX_HEADER_BYTES // 2))
        return b"[" * depth + b"]" * depth
    if how == "not_utf8":
        return b"\xff\xfe" + text
    if how == "empty":
        return b""
    return text


@st.composite
def structured_messages(draw):
    header = draw(headers())
    return [draw(header_bytes(header)), *draw(binary_frames(header))]


messages = structured_messages() | st.lists(st.binary(max_size=300), min_size=1, max_size=5)


def reply_id_for(frame0):
    """The ``id`` the daemon must put in its reply to a request whose frame 0 is ``frame0``."""
    if len(frame0) > protocol.MAX_HEADER_BYTES:
        return None
    try:
        header = json.loads(frame0.decode("utf-8"))
        json.dumps(header, ensure_ascii=False).encode("utf-8")   # no unpaired surrogates
    except (UnicodeError, ValueError, RecursionError):
        return None
    request_id = header.get("id") if isinstance(header, dict) else None
    return request_id if isinstance(request_id, str) and request_id else None


def rss_kib(pid):
    """Resident set size (VmRSS) of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Fuzzer:
    """Sends messages to ``endpoint`` one at a time and checks each final reply (AssertionError if wrong)."""

    def __init__(self, endpoint, timeout=20.0, messages_per_connection=25):
        self.endpoint = endpoint
        self.timeout = timeout
        self.messages_per_connection = messages_per_connection
        self.sent = 0
        self.connections = 0
        self.replies = collections.Counter()     # final kind, or error code
        self._socket = None

    def close(self):
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _connection(self):
        if self._socket is None or self.sent % self.messages_per_connection == 0:
            self.close()
            self._socket = zmq.Context.instance().socket(zmq.DEALER)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.connect(self.endpoint)
            self.connections += 1
        return self._socket

    def send(self, frames):
        """Send one message; return its final reply header after checking it."""
        socket = self._connection()
        socket.send_multipart(frames)
        self.sent += 1
        while True:
            assert socket.poll(self.timeout * 1000), f"no reply within {self.timeout} s to {frames[0][:120]!r}"
            header, *rest = socket.recv_multipart()
            reply = json.loads(header)
            if reply.get("kind") != "progress":
                break
        self._check(frames, reply, rest)
        return reply

    def _check(self, frames, reply, rest):
        kind = reply.get("kind")
        assert kind in FINAL_KINDS, reply
        assert reply.get("id") == reply_id_for(frames[0]), (reply, frames[0][:120])
        if kind == "error":
            code, message = reply.get("code"), reply.get("message")
            assert code in protocol.ERROR_CODES and code != "internal", (reply, frames[0][:200])
            assert isinstance(message, str) and message and "Traceback" not in message, reply
            assert rest == [], "an error reply has no binary frames"
            self.replies[code] += 1
        else:
            if kind == "result":
                assert len(rest) == 1 and len(rest[0]) == protocol.frame_size(reply["width"], reply["height"],
                                                                              reply["format"]), reply
            self.replies[kind] += 1

