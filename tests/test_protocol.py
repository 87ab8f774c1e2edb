"""backend.protocol: headers, error codes, pixel-format sizes, endpoints, request options; stays stdlib-only."""

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("value, words", [(1.5, "from 0 to 1, got 1.5"), (-0.1, "got -0.1"), (True, "got True"),
                                          ("1", "got '1'"), (None, "got None")])
def test_strength_outside_0_to_1_is_a_bad_request_naming_the_field(value, words):
    with pytest.raises(protocol.BadRequest, match=words) as err:
        protocol.check_strength(value, "--strength")
    assert str(err.value).startswith("--strength must be a number")
    assert protocol.check_strength(0) == 0.0 and protocol.check_strength(1) == 1.0


@pytest.mark.parametrize("name, value, words", [
    ("iterations", 100_001, "'iterations' must be an integer from 1 to 100000"),
    ("iterations", 10.0, "'iterations' must be an integer"),
    ("checkpoint_every", 99, "from 100 to"),
    ("border", protocol.MAX_BORDER + 4, f"'border' must be an integer from 0 to {protocol.MAX_BORDER}"),
    ("border", 6, "'border' must be a multiple of 4"),
    ("lr", float("inf"), "'lr' must be a number"),
    ("flip", 0, "'flip' must be true or false"),
    ("size", True, "'size' must be an integer"),
    ("vgg_weights", "/etc/passwd", "unknown training option 'vgg_weights'"),
])
def test_training_options_outside_their_description_are_bad_requests(name, value, words):
    with pytest.raises(protocol.BadRequest, match=words):
        protocol.check_train_option(name, value)


def test_each_training_option_takes_its_own_bounds_and_default():
    for name, option in protocol.TRAIN_OPTIONS.items():
        assert option.name == name and option.flag == "--" + name.replace("_", "-")
        for value in (option.low, option.high):
            assert protocol.check_train_option(name, option.kind(value)) == value
        for default in (option.default, option.editor_default):
            assert default is None or protocol.check_train_option(name, default) == default


def test_docs_protocol_lists_every_training_option():
    table = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert [name for name in protocol.TRAIN_OPTIONS if f"`{name}`" not in table] == []
