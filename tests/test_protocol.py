"""backend.protocol: headers, error codes, pixel-format sizes, endpoints; stays stdlib-only."""

import json
import subprocess
import sys

import pytest

from backend import protocol
from backend.protocol import BrushworkError


def test_header_round_trip_adds_version_and_keeps_unicode():
    data = protocol.encode_header({"id": "abc", "kind": "stylize", "model": "la_grande_jatte", "name": "Schrei ✓"})
    header = protocol.decode_header(data)
    assert header == {"v": protocol.PROTOCOL_VERSION, "id": "abc", "kind": "stylize",
                      "model": "la_grande_jatte", "name": "Schrei ✓"}
    assert json.loads(data.decode("utf-8"))["name"] == "Schrei ✓"


@pytest.mark.parametrize("data, fragment", [
    (b"\xff\xfe not utf-8", "UTF-8 JSON"),
    (b"{not json", "UTF-8 JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b'"just a string"', "JSON object"),
    (b"{}" + b" " * protocol.MAX_HEADER_BYTES, "at most"),
])
def test_decode_header_rejects_bad_frames_with_bad_request(data, fragment):
    with pytest.raises(BrushworkError) as err:
        protocol.decode_header(data)
    assert err.value.code == "bad_request"
    assert fragment in err.value.message


@pytest.mark.parametrize("code", protocol.ERROR_CODES)
def test_every_error_code_maps_to_an_exception_carrying_it(code):
    error = protocol.error_from_code(code, f"message for {code}")
    assert isinstance(error, BrushworkError)
    assert error.code == code
    assert str(error) == f"message for {code}"


def test_error_classes_for_daemon_trouble():
    assert isinstance(protocol.error_from_code("timeout", "x"), protocol.Unavailable)
    assert isinstance(protocol.error_from_code("cancelled", "x"), protocol.Cancelled)
    unknown = protocol.error_from_code("no_such_code", "odd")
    assert type(unknown) is BrushworkError and unknown.code == "internal"


def test_request_ids_are_unique():
    ids = {protocol.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize("dtype, channels, expected", [
    ("u8", "RGBA", 4 * 3 * 4), ("u16", "BGRA", 4 * 3 * 8), ("f16", "RGB", 4 * 3 * 6), ("f32", "BGR", 4 * 3 * 12),
])
def test_frame_size(dtype, channels, expected):
    assert protocol.frame_size(4, 3, {"dtype": dtype, "channels": channels}) == expected


@pytest.mark.parametrize("fmt", [None, {"dtype": "u32"}, {"dtype": "u8", "channels": "ARGB"},
                                 {"dtype": "u8", "transfer": "gamma22"}])
def test_validate_format_rejects_unknown_formats(fmt):
    with pytest.raises(BrushworkError) as err:
        protocol.validate_format(fmt)
    assert err.value.code == "bad_request"


def test_default_endpoint_is_a_private_ipc_socket(monkeypatch, tmp_path):
    monkeypatch.delenv("BRUSHWORK_ENDPOINT", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert protocol.default_endpoint() == f"ipc://{tmp_path}/brushwork/daemon.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert protocol.default_endpoint().startswith("ipc://") and "brushwork-" in protocol.default_endpoint()
    monkeypatch.setenv("BRUSHWORK_ENDPOINT", "tcp://127.0.0.1:6000")
    assert protocol.default_endpoint() == "tcp://127.0.0.1:6000"


def test_protocol_module_uses_only_the_standard_library():
    code = ("import sys, backend.protocol; "
            "bad = [m for m in ('numpy', 'torch', 'zmq', 'PIL') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
