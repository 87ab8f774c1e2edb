"""Hostile model folders: random and hostile metadata, weights and special files dropped into a
folder a running daemon watches, while clients keep asking it for work.

Used by tests/test_fuzz_daemon.py and benchmarks/fuzz_model_folder.py. A :class:`FolderFuzzer`
writes one file per :meth:`~FolderFuzzer.drop` (the folder keeps the newest ``keep`` of them):
valid models, metadata with odd values, deep nesting or huge numbers, garbage or oversized weights,
FIFOs, links to devices, loops, directories and sockets where files should be, thumbnails that are
none of these. :class:`Traffic` meanwhile pings the daemon from one thread and, from another, asks
for ``info`` (with thumbnails) and stylizes and upscales with the models that were there before,
checking every answer.
"""

import collections
import json
import os
import random
import socket
import threading
import time
from pathlib import Path

from backend.client import Client
from backend.model_files import ARCHITECTURE_RANGES

FMT = {"dtype": "u8", "channels": "RGBA"}
ODD_VALUES = [None, True, -1, 0, 2**64, 1e308, float("nan"), "", "x" * 5000, "\x00\x1b[2J", "../../etc/passwd",
              "/dev/zero", [], {}, [[[[]]]], {"type": "style"}, "style", "sr", 3, 1.5, ["u8"]]


class FolderFuzzer:
    """Writes hostile files into ``folder``, seeded by ``seed``; ``template`` is a valid model's JSON
    path (a small one: its weights are copied for the valid and near-valid models)."""

    def __init__(self, folder, template, seed=0, keep=150):
        self.folder = Path(folder)
        self.rng = random.Random(seed)
        self.meta = json.loads(Path(template).read_text())
        self.weights = Path(template).with_name(self.meta["weights"]).read_bytes()
        self.keep = keep
        self.written = 0
        self.kinds = collections.Counter()
        self._files = collections.deque()

    def drop(self):
        """Write one more file (and remove the oldest beyond ``keep``); return what kind it was."""
        kind = self.rng.choice(["valid", "metadata", "metadata", "json_bytes", "weights", "weights", "special",
                                "special", "thumbnail", "rewrite"])
        name = f"f{self.written:05d}"
        getattr(self, f"_{kind}")(name)
        self.written += 1
        self.kinds[kind] += 1
        while len(self._files) > self.keep:
            _remove(self._files.popleft())
        return kind

    # -- helpers

    def _path(self, name, suffix):
        path = self.folder / f"{name}{suffix}"
        self._files.append(path)
        return path

    def _write(self, name, suffix, data):
        path = self._path(name, suffix)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        return path

    def _meta(self, name, **changes):
        return json.dumps({**self.meta, "name": name, "weights": f"{name}.safetensors", **changes})

    def _existing_json(self):
        candidates = [p for p in self._files if p.suffix == ".json"]
        return self.rng.choice(candidates) if candidates else None

    # -- kinds of file

    def _valid(self, name):
        """A valid model: the template's weights under a new name (its JSON is the file counted)."""
        (self.folder / f"{name}.safetensors").write_bytes(self.weights)
        self._files.append(self.folder / f"{name}.safetensors")
        self._write(name, ".json", self._meta(name))

    def _metadata(self, name):
        """The template's metadata with a field (or an architecture field) given an odd value or deleted."""
        meta = json.loads(self._meta(name))
        rng = self.rng
        how = rng.choice(["odd", "delete", "architecture", "weights", "deep", "extra"])
        key = rng.choice(sorted(meta))
        if how == "odd":
            meta[key] = rng.choice(ODD_VALUES)
        elif how == "delete":
            del meta[key]
        elif how == "architecture":
            arch_key = rng.choice([*ARCHITECTURE_RANGES, "type", "border", "residual", "upsample", "bogus"])
            meta["architecture"] = dict(meta["architecture"], **{arch_key: rng.choice(
                ODD_VALUES + [256, 32, 8, 10**6, 4, 60, 64])})
        elif how == "weights":
            meta["weights"] = rng.choice(["../x.safetensors", "/dev/zero", ".", "..", "a/b", "\\x", "f00000.json",
                                          f"{name}.png", rng.choice(ODD_VALUES)])
        elif how == "deep":
            depth = rng.choice([33, 100, 900, 5000])
            meta["recipe"] = "DEEP"
            text = json.dumps(meta).replace('"DEEP"', "[" * depth + "]" * depth)
            self._write(name, ".json", text)
            return
        else:
            meta[rng.choice(["notes", "", "\u202e", "x" * 300])] = rng.choice(ODD_VALUES)
        self._write(name, ".json", json.dumps(meta, allow_nan=True))

    def _json_bytes(self, name):
        """Bytes that are not (sensible) JSON: deep nesting, huge numbers, garbage, a cap-sized file."""
        rng = self.rng
        choice = rng.choice(["nested", "big_int", "garbage", "empty", "not_object", "not_utf8", "oversized",
                             "truncated", "big_float"])
        data = {
            "nested": lambda: b"[" * 500_000 + b"]" * 500_000,
            "big_int": lambda: self._meta(name)[:-1].encode() + b', "n": ' + b"7" * rng.choice([4301, 100_000]) + b"}",
            "garbage": lambda: rng.randbytes(rng.randint(1, 4096)),
            "empty": lambda: b"",
            "not_object": lambda: rng.choice([b"null", b"[]", b'"x"', b"1e999", b"NaN"]),
            "not_utf8": lambda: b"\xff\xfe" + self._meta(name).encode("utf-16-le"),
            "oversized": lambda: self._meta(name, data={"pad": "x" * (1 << 20)}).encode(),
            "truncated": lambda: self._meta(name).encode()[:rng.randint(0, 200)],
            "big_float": lambda: self._meta(name, scale=1e308).encode().replace(b"1e+308", b"1" + b"0" * 400),
        }[choice]()
        self._write(name, ".json", data)

    def _weights(self, name):
        """A JSON naming weights that are garbage, truncated, oversized, sparse or a pickle."""
        rng = self.rng
        choice = rng.choice(["garbage", "truncated", "junk_after", "sparse_huge", "sparse_fits", "header_claim",
                             "pickle", "big_arch"])
        weights = self.folder / f"{name}.safetensors"
        meta = {}
        if choice == "garbage":
            weights.write_bytes(rng.randbytes(rng.randint(0, 65536)))
        elif choice == "truncated":
            weights.write_bytes(self.weights[:rng.randint(0, len(self.weights) - 1)])
        elif choice == "junk_after":
            weights.write_bytes(self.weights + rng.randbytes(rng.randint(1, 1 << 20)))
        elif choice in ("sparse_huge", "sparse_fits", "big_arch"):
            with open(weights, "wb") as f:
                f.truncate(100 * 2**30 if choice == "sparse_huge" else len(self.weights) + 4096)
            if choice == "big_arch":   # the largest architecture allowed, with a file far smaller than it needs
                meta["architecture"] = {"type": "style", "channels": 256, "blocks": 32}
        elif choice == "header_claim":   # a safetensors header length of 2**63
            weights.write_bytes((2**63).to_bytes(8, "little") + b"{}")
        else:
            weights.write_bytes(b"\x80\x04\x95" + rng.randbytes(64) + b".")
        self._files.append(weights)
        self._write(name, ".json", self._meta(name, **meta))

    def _special(self, name):
        """Something that is not a regular file where the store expects one."""
        rng = self.rng
        choice = rng.choice(["fifo_json", "fifo_weights", "dev_zero_json", "dev_urandom_weights", "loop", "dangling",
                             "directory", "socket", "outside_link", "self_link"])
        if choice in ("fifo_weights", "dev_urandom_weights", "outside_link"):
            weights = self._path(name, ".safetensors")
            if choice == "fifo_weights":
                os.mkfifo(weights)
            else:
                weights.symlink_to("/dev/urandom" if choice == "dev_urandom_weights" else "/etc/hostname")
            self._write(name, ".json", self._meta(name))
            return
        path = self._path(name, ".json")
        if choice == "fifo_json":
            os.mkfifo(path)
        elif choice == "dev_zero_json":
            path.symlink_to("/dev/zero")
        elif choice == "loop":
            other = self._path(f"{name}_loop", ".json")
            path.symlink_to(other.name)
            other.symlink_to(path.name)
        elif choice == "dangling":
            path.symlink_to(f"{name}_nowhere.json")
        elif choice == "self_link":
            path.symlink_to(path.name)
        elif choice == "directory":
            path.mkdir()
        else:
            server = socket.socket(socket.AF_UNIX)
            try:
                server.bind(str(path))
            finally:
                server.close()

    def _thumbnail(self, name):
        """A valid model whose thumbnail is garbage, oversized, a FIFO or a link to a device."""
        self._valid(name)
        thumbnail = self._path(name, ".png")
        choice = self.rng.choice(["garbage", "oversized", "fifo", "dev_zero"])
        if choice == "garbage":
            thumbnail.write_bytes(self.rng.randbytes(1000))
        elif choice == "oversized":
            with open(thumbnail, "wb") as f:
                f.truncate((1 << 20) + 1)
        elif choice == "fifo":
            os.mkfifo(thumbnail)
        else:
            thumbnail.symlink_to("/dev/zero")

    def _rewrite(self, name):
        """An earlier JSON changed in place (or deleted) while the daemon may be reading it."""
        target = self._existing_json()
        if target is None or not target.is_file() or target.is_symlink():
            self._json_bytes(name)
            return
        if self.rng.random() < 0.3:
            _remove(target)
        with open(target, "wb") as f:
            f.write(self.rng.randbytes(self.rng.randint(0, 300)))
        self._write(name, ".json", self._meta(name, display_name=self.rng.choice(["ok", "\x07bell"])))


def _remove(path):
    try:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    except OSError:
        pass


class Traffic:
    """Clients that keep working while the folder changes: one thread pings every ``ping_every``
    seconds (recording each round trip), one asks for ``info`` with thumbnails, then stylizes with
    ``style`` and upscales with ``sr`` (models that were there before), checking every answer."""

    def __init__(self, endpoint, style, sr, ping_every=0.05, timeout=10.0):
        self.endpoint, self.style, self.sr = endpoint, style, sr
        self.ping_every, self.timeout = ping_every, timeout
        self.ping_seconds = []
        self.requests = collections.Counter()
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._guard, args=(self._pings,), daemon=True),
                         threading.Thread(target=self._guard, args=(self._work,), daemon=True)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _guard(self, loop):
        try:
            with Client(self.endpoint, timeout=self.timeout) as client:
                loop(client)
        except Exception as exc:   # noqa: BLE001 -- every failure is reported by the caller
            self.failures.append(f"{loop.__name__}: {type(exc).__name__}: {exc}")

    def _pings(self, client):
        while not self._stop.is_set():
            self.ping_seconds.append(client.ping())
            time.sleep(self.ping_every)

    def _work(self, client):
        data = bytes(range(256)) * 3   # 16 x 12 RGBA
        while not self._stop.is_set():
            info = client.info(thumbnails=True)
            names = {m["name"] for m in info["models"]}
            if not {self.style, self.sr} <= names:
                raise AssertionError(f"info lost a model that was there before: {sorted(names)[:20]}")
            self.requests["info"] += 1
            if bytes(client.stylize(data, 16, 12, FMT, self.style, strength=0.0).pixels) != data:
                raise AssertionError("stylize at strength 0 did not return its input")
            self.requests["stylize"] += 1
            result = client.upscale(data, 16, 12, FMT, model=self.sr, scale=None)
            if (result.width, result.height) != (32, 24):
                raise AssertionError(f"upscale returned {result.width}x{result.height}")
            self.requests["upscale"] += 1


def ping_percentiles(seconds):
    """(median, 99th percentile, maximum) of ping round trips in seconds."""
    ordered = sorted(seconds)
    return (ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], ordered[-1])
