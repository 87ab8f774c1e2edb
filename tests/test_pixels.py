"""Pixel formats: every layout round trips, channel orders really swap, sRGB curves, bad sizes."""

import itertools

import numpy as np
import pytest

from backend import pixels
from backend.protocol import BrushworkError

FORMATS = [{"dtype": d, "channels": c, "transfer": t}
           for d, c, t in itertools.product(("u8", "u16", "f16", "f32"), ("RGBA", "BGRA", "RGB", "BGR"),
                                            ("srgb", "linear"))]
NUMPY = {"u8": np.uint8, "u16": np.uint16, "f16": np.float16, "f32": np.float32}


def random_layer(fmt, height=5, width=7, seed=0):
    rng = np.random.default_rng(seed)
    shape = (height, width, len(fmt["channels"]))
    if fmt["dtype"] == "u8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if fmt["dtype"] == "u16":
        return rng.integers(0, 65536, shape).astype(np.uint16)
    return rng.random(shape).astype(NUMPY[fmt["dtype"]])


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: "-".join(f.values()))
def test_every_format_round_trips(fmt):
    layer = random_layer(fmt)
    rgb, alpha = pixels.decode(layer.tobytes(), 7, 5, fmt)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.float32
    assert (alpha is None) == ("A" not in fmt["channels"])
    back = pixels.encode(rgb, alpha, fmt)
    assert back.dtype == NUMPY[fmt["dtype"]] and back.shape == layer.shape
    if fmt["dtype"] in ("u8", "u16"):
        assert np.array_equal(back, layer)
    else:
        np.testing.assert_allclose(back.astype(np.float64), layer, atol=2e-3 if fmt["dtype"] == "f16" else 1e-6)


@pytest.mark.parametrize("dtype,transfer", [("u8", "linear"), ("u16", "linear"), ("u16", "srgb")])
def test_every_integer_code_round_trips(dtype, transfer):
    top = 255 if dtype == "u8" else 65535
    codes = np.arange(top + 1, dtype=NUMPY[dtype])
    codes = np.resize(codes, (len(codes) + 2) // 3 * 3).reshape(1, -1, 3)
    fmt = {"dtype": dtype, "channels": "RGB", "transfer": transfer}
    rgb, _ = pixels.decode(codes.tobytes(), codes.shape[1], 1, fmt)
    assert np.array_equal(pixels.encode(rgb, None, fmt), codes)


def test_bgra_and_rgba_really_differ_by_a_swap():
    layer = np.array([[[10, 20, 30, 40]]], np.uint8)
    rgb_rgba, alpha = pixels.decode(layer.tobytes(), 1, 1, {"dtype": "u8", "channels": "RGBA"})
    rgb_bgra, _ = pixels.decode(layer.tobytes(), 1, 1, {"dtype": "u8", "channels": "BGRA"})
    np.testing.assert_allclose(rgb_rgba[0, 0] * 255, [10, 20, 30], atol=1e-4)
    np.testing.assert_allclose(rgb_bgra[0, 0] * 255, [30, 20, 10], atol=1e-4)
    assert alpha[0, 0] == pytest.approx(40 / 255)
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 1
    assert pixels.encode(red, None, {"dtype": "u8", "channels": "BGR"}).tolist() == [[[0, 0, 255]]]
    assert pixels.encode(red, None, {"dtype": "u8", "channels": "RGBA"}).tolist() == [[[255, 0, 0, 255]]]


def test_srgb_curve_known_values():
    linear = np.array([0.0, 0.0031308, 0.18, 0.2140411, 1.0])
    srgb = np.array([0.0, 0.04044994, 0.46135613, 0.5, 1.0])
    np.testing.assert_allclose(pixels.linear_to_srgb(linear), srgb, atol=1e-6)
    np.testing.assert_allclose(pixels.srgb_to_linear(srgb), linear, atol=1e-6)
    # the linear segment near black
    assert pixels.srgb_to_linear(np.array([0.02]))[0] == pytest.approx(0.02 / 12.92)


def test_linear_input_is_converted_to_srgb():
    half = np.full((1, 1, 3), 0.2140411, np.float32)
    rgb, _ = pixels.decode(half.tobytes(), 1, 1, {"dtype": "f32", "channels": "RGB", "transfer": "linear"})
    np.testing.assert_allclose(rgb, 0.5, atol=1e-6)
    back = pixels.encode(rgb, None, {"dtype": "u16", "channels": "RGB", "transfer": "linear"})
    assert back[0, 0, 0] == round(0.2140411 * 65535)


def test_float_input_is_clamped_and_nan_becomes_zero():
    layer = np.array([[[np.nan, -1.0, 2.0, 0.5]]], np.float32)
    rgb, alpha = pixels.decode(layer.tobytes(), 1, 1, {"dtype": "f32", "channels": "RGBA"})
    assert rgb.tolist() == [[[0.0, 0.0, 1.0]]] and alpha.tolist() == [[0.5]]


def test_decoding_does_not_copy_the_input_buffer_for_integer_layouts():
    layer = bytearray(random_layer({"dtype": "u16", "channels": "RGBA"}).tobytes())
    rgb1, _ = pixels.decode(layer, 7, 5, {"dtype": "u16", "channels": "RGBA"})
    layer[0:2] = b"\xff\xff"
    rgb2, _ = pixels.decode(memoryview(layer), 7, 5, {"dtype": "u16", "channels": "RGBA"})
    assert rgb2[0, 0, 0] == 1.0 and not np.array_equal(rgb1, rgb2)


@pytest.mark.parametrize("fmt,size,expected", [
    ({"dtype": "u16", "channels": "RGBA"}, 100, "expected 280 bytes for 7x5 RGBA u16, got 100"),
    ({"dtype": "u8", "channels": "BGR"}, 106, "expected 105 bytes for 7x5 BGR u8, got 106"),
    ({"dtype": "f32", "channels": "RGB"}, 0, "expected 420 bytes for 7x5 RGB f32, got 0"),
])
def test_wrong_byte_counts_are_reported_exactly(fmt, size, expected):
    with pytest.raises(BrushworkError) as err:
        pixels.decode(b"\0" * size, 7, 5, fmt)
    assert err.value.code == "bad_pixels"
    assert err.value.message == expected


def test_bad_sizes_and_formats_are_bad_pixels():
    for width, height, fmt in ((0, 5, {"dtype": "u8"}), (7, -1, {"dtype": "u8"}), (7, 5, {"dtype": "u12"}),
                               (7, 5, {"dtype": "u8", "channels": "ARGB"})):
        with pytest.raises(BrushworkError) as err:
            pixels.decode(b"", width, height, fmt)
        assert err.value.code == "bad_pixels"


def test_masks_decode_to_unit_floats():
    mask = pixels.decode_mask(bytes([0, 255, 51, 255, 0, 0]), 3, 2)
    np.testing.assert_allclose(mask, [[0, 1, 0.2], [1, 0, 0]], atol=1e-6)
    with pytest.raises(BrushworkError, match="expected 6 bytes for a 3x2 u8 mask, got 5"):
        pixels.decode_mask(b"\0" * 5, 3, 2)


def test_missing_alpha_encodes_as_opaque():
    rgb = np.zeros((2, 2, 3), np.float32)
    assert (pixels.encode(rgb, None, {"dtype": "u16", "channels": "BGRA"})[..., 3] == 65535).all()
    assert (pixels.encode(rgb, None, {"dtype": "f16", "channels": "RGBA"})[..., 3] == 1).all()


def test_ycbcr_round_trip_and_grey_has_no_chroma():
    rgb = np.random.default_rng(1).random((4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(pixels.ycbcr_to_rgb(pixels.rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    grey = np.full((1, 1, 3), 0.3, np.float32)
    np.testing.assert_allclose(pixels.rgb_to_ycbcr(grey), [[[0.3, 0, 0]]], atol=1e-6)
