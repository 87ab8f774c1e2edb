"""Editor pixel buffers <-> float32 arrays, and the colour maths the engine needs.

Buffers are rows top to bottom, no padding, straight alpha, native (little-endian)
byte order; see the pixel formats in docs/protocol.md. Decoded images are
float32 H x W x 3 sRGB in [0, 1] plus float32 H x W alpha (or None).

Integer formats go through lookup tables, so decoding a 4096 x 4096 RGBA layer needs
no full-size float64 temporaries, and ``encode(decode(x)) == x`` exactly for u8 and u16.
"""

import numpy as np

from backend.protocol import DTYPE_SIZES, BadPixels, BrushworkError, validate_format

_NUMPY_DTYPES = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}
_INT_MAX = {"u8": 255, "u16": 65535}


def srgb_to_linear(s):
    """IEC 61966-2-1 sRGB decoding curve (array in, float array out; dtype preserved for floats)."""
    s = np.asarray(s)
    out = np.where(s <= 0.04045, s / 12.92, ((np.maximum(s, 0.04045) + 0.055) / 1.055) ** 2.4)
    return out.astype(s.dtype if s.dtype.kind == "f" else np.float64, copy=False)


def linear_to_srgb(v):
    """IEC 61966-2-1 sRGB encoding curve (inverse of :func:`srgb_to_linear`)."""
    v = np.asarray(v)
    out = np.where(v <= 0.0031308, v * 12.92, 1.055 * np.maximum(v, 0.0031308) ** (1 / 2.4) - 0.055)
    return out.astype(v.dtype if v.dtype.kind == "f" else np.float64, copy=False)


def _decode_table(dtype, transfer):
    """float32 value (sRGB-encoded) of every integer code of ``dtype``."""
    codes = np.arange(_INT_MAX[dtype] + 1, dtype=np.float64) / _INT_MAX[dtype]
    return (linear_to_srgb(codes) if transfer == "linear" else codes).astype(np.float32)


_TABLES = {}


def _table(dtype, transfer):
    key = (dtype, transfer)
    if key not in _TABLES:
        _TABLES[key] = _decode_table(dtype, transfer)
    return _TABLES[key]


def _describe(width, height, fmt):
    return f"{width}x{height} {fmt['channels']} {fmt['dtype']}"


def _check_size(width, height):
    if isinstance(width, bool) or isinstance(height, bool) or not isinstance(width, int) \
            or not isinstance(height, int) or width < 1 or height < 1:
        raise BadPixels(f"width and height must be positive integers, got {width!r} x {height!r}")


def _as_array(buf, width, height, fmt):
    """View ``buf`` as an H x W x C array of the format's dtype (no copy), checking its length."""
    _check_size(width, height)
    channels = len(fmt["channels"])
    expected = width * height * channels * DTYPE_SIZES[fmt["dtype"]]
    view = memoryview(buf).cast("B") if not isinstance(buf, np.ndarray) else buf.reshape(-1).view(np.uint8)
    if view.nbytes != expected:
        raise BadPixels(f"expected {expected} bytes for {_describe(width, height, fmt)}, got {view.nbytes}")
    return np.frombuffer(view, dtype=_NUMPY_DTYPES[fmt["dtype"]]).reshape(height, width, channels)


def _rgb_indices(channels):
    return [channels.index(c) for c in "RGB"]


def decode(buf, width, height, fmt):
    """Decode an editor buffer; return (rgb float32 HxWx3 sRGB [0,1], alpha float32 HxW or None).

    Linear-light input is converted to sRGB. Float input is clamped to [0, 1] (NaN -> 0).
    Raises BadPixels if the byte count does not match the format.
    """
    try:
        fmt = validate_format(fmt)
    except BrushworkError as exc:
        raise BadPixels(exc.message) from None
    src = _as_array(buf, width, height, fmt)
    rgb = np.empty((height, width, 3), np.float32)
    integer = fmt["dtype"] in _INT_MAX
    table = _table(fmt["dtype"], fmt["transfer"]) if integer else None
    for out_channel, src_channel in enumerate(_rgb_indices(fmt["channels"])):
        plane = src[:, :, src_channel]
        if integer:
            np.take(table, plane, out=rgb[:, :, out_channel])
        else:
            rgb[:, :, out_channel] = _clean_float(plane)
            if fmt["transfer"] == "linear":
                rgb[:, :, out_channel] = linear_to_srgb(rgb[:, :, out_channel])
    alpha = None
    if "A" in fmt["channels"]:
        plane = src[:, :, fmt["channels"].index("A")]
        if integer:
            alpha = plane.astype(np.float32)
            alpha *= np.float32(1.0 / _INT_MAX[fmt["dtype"]])
        else:
            alpha = _clean_float(plane)
    return rgb, alpha


def _clean_float(plane):
    """float32 copy of a float plane, NaN -> 0, clamped to [0, 1]."""
    out = np.nan_to_num(plane.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def _quantize(plane, dtype, out):
    """Write a float [0,1] plane into an integer/float output plane of ``dtype``."""
    if dtype in _INT_MAX:
        scaled = np.clip(plane, 0.0, 1.0) * np.float32(_INT_MAX[dtype])
        np.rint(scaled, out=scaled)
        out[...] = scaled
    else:
        out[...] = np.clip(plane, 0.0, 1.0)


def encode(rgb, alpha, fmt):
    """Encode rgb (HxWx3 sRGB [0,1]) and alpha (HxW or None -> opaque) as an HxWxC array in ``fmt``.

    The array is C-contiguous; ``memoryview(arr)`` or ``arr.tobytes()`` gives the buffer.
    """
    fmt = validate_format(fmt)
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadPixels(f"rgb must be H x W x 3, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    if alpha is not None and np.shape(alpha) != (height, width):
        raise BadPixels(f"alpha must be {height} x {width}, got shape {np.shape(alpha)}")
    channels = fmt["channels"]
    out = np.empty((height, width, len(channels)), _NUMPY_DTYPES[fmt["dtype"]])
    for src_channel, out_channel in enumerate(_rgb_indices(channels)):
        plane = rgb[:, :, src_channel]
        if fmt["transfer"] == "linear":
            plane = srgb_to_linear(np.clip(plane, 0.0, 1.0))
        _quantize(plane, fmt["dtype"], out[:, :, out_channel])
    if "A" in channels:
        target = out[:, :, channels.index("A")]
        if alpha is None:
            target[...] = _INT_MAX.get(fmt["dtype"], 1)
        else:
            _quantize(np.asarray(alpha, dtype=np.float32), fmt["dtype"], target)
    return out


def decode_mask(buf, width, height):
    """Decode a u8 selection mask (255 = selected) to float32 H x W in [0, 1]."""
    _check_size(width, height)
    view = memoryview(buf).cast("B") if not isinstance(buf, np.ndarray) else buf.reshape(-1).view(np.uint8)
    if view.nbytes != width * height:
        raise BadPixels(f"expected {width * height} bytes for a {width}x{height} u8 mask, got {view.nbytes}")
    mask = np.frombuffer(view, np.uint8).reshape(height, width).astype(np.float32)
    mask *= np.float32(1 / 255)
    return mask


# ITU-R BT.601 full-range YCbCr (as JPEG uses); only luma/chroma separation matters here.
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], np.float32)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR.astype(np.float64)).astype(np.float32)


def rgb_to_ycbcr(rgb):
    """HxWx3 RGB -> HxWx3 (Y, Cb, Cr), Y in [0,1], chroma centred on 0."""
    return np.asarray(rgb, np.float32) @ _RGB_TO_YCBCR.T


def ycbcr_to_rgb(ycc):
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    return np.asarray(ycc, np.float32) @ _YCBCR_TO_RGB.T
