"""Krita pixel layouts <-> brushwork pixel formats, rectangles and selection masks.

Pure Python (no Krita, no numpy) so it can be unit-tested anywhere (as the installer stages
it); byte counts and the check of a daemon's result are the vendored client's. Facts about
Krita 5 that this module encodes (checked against Krita 5.1.5's ``Node.pixelData``):

* 8- and 16-bit integer RGBA layers store **B, G, R, A**; half and float layers store
  **R, G, B, A**; all little-endian, rows top to bottom, no padding.
* The transfer curve is only known from the ICC profile's name: Krita's bundled
  ``*-g10.icc`` and "linear" profiles are linear light, the others are (close to) sRGB.
* ``Selection.pixelData`` gives one byte per pixel, 255 = fully selected, soft edges in between.
"""

import struct
from collections import namedtuple

from .brushwork_client import protocol

# Krita colour depth -> (protocol dtype, channel order in memory)
DEPTHS = {"U8": ("u8", "BGRA"), "U16": ("u16", "BGRA"), "F16": ("f16", "RGBA"), "F32": ("f32", "RGBA")}
STRUCT_CODES = {"u8": "B", "u16": "H", "f16": "e", "f32": "f"}
MODEL_NAMES = {"GRAYA": "Grayscale", "CMYKA": "CMYK", "LABA": "L*a*b*", "XYZA": "XYZ", "YCbCrA": "YCbCr", "A": "Alpha mask"}
UNSUPPORTED_PROFILE_WORDS = ("PQ", "ST 2084", "HLG")


class UnsupportedImage(ValueError):
    """The document or layer cannot be processed; the message says why and what to do."""


def transfer_from_profile(profile):
    """``"linear"`` for Krita's linear-light profiles (``*-g10.icc``, "linear", scRGB), else ``"srgb"``.

    Gamma-2.2 profiles are treated as sRGB (their curves differ by under 1 %); HDR (PQ/HLG)
    profiles are refused because the networks were trained on display-referred sRGB.
    """
    name = profile or ""
    if any(word in name for word in UNSUPPORTED_PROFILE_WORDS):
        raise UnsupportedImage(f"the colour profile {name!r} is HDR (PQ/HLG); convert the image to an sRGB "
                               "or linear profile first (Image > Convert Image Color Space)")
    lowered = name.lower()
    if "-g10" in lowered or "linear" in lowered or "scrgb" in lowered:
        return "linear"
    return "srgb"


def pixel_format(color_model, color_depth, profile):
    """The protocol format dict for a Krita layer, or raise UnsupportedImage with a clear message."""
    if color_model != "RGBA":
        what = MODEL_NAMES.get(color_model, color_model)
        raise UnsupportedImage(f"brushwork works on RGB images; this one is {what}. "
                               "Convert it with Image > Convert Image Color Space > RGB/Alpha.")
    if color_depth not in DEPTHS:
        raise UnsupportedImage(f"unsupported colour depth {color_depth!r}; expected one of {sorted(DEPTHS)}")
    dtype, channels = DEPTHS[color_depth]
    return {"dtype": dtype, "channels": channels, "transfer": transfer_from_profile(profile)}


def bytes_per_pixel(fmt):
    """Bytes of one pixel in format ``fmt``."""
    return protocol.frame_size(1, 1, fmt)


class Rect(namedtuple("Rect", "x y width height")):
    """An axis-aligned pixel rectangle (x, y, width, height); empty when width or height <= 0."""

    __slots__ = ()

    @property
    def is_empty(self):
        return self.width <= 0 or self.height <= 0

    def intersect(self, other):
        """The overlap of two rectangles (an empty Rect when they do not overlap)."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        if x1 <= x0 or y1 <= y0:
            return Rect(x0, y0, 0, 0)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def scaled(self, factor):
        """The rectangle with every coordinate multiplied by an integer ``factor``."""
        return Rect(self.x * factor, self.y * factor, self.width * factor, self.height * factor)


def request_region(layer_bounds, canvas, selection_bounds=None):
    """The pixels to process: layer bounds ∩ canvas (∩ selection bounds, when there is a selection)."""
    region = Rect(*layer_bounds).intersect(Rect(*canvas))
    if selection_bounds is not None:
        region = region.intersect(Rect(*selection_bounds))
    if region.is_empty:
        if selection_bounds is not None:
            raise UnsupportedImage("the selection does not overlap the active layer's pixels")
        raise UnsupportedImage("the active layer is empty: there are no pixels to process")
    return region


def selection_mask(mask, region):
    """The 8-bit mask to send for ``region``, or None when every pixel is fully selected.

    ``mask`` is ``Selection.pixelData`` over ``region`` (one byte per pixel). A mask with no
    selected pixel at all is refused, since processing it would change nothing.
    """
    mask = bytes(mask)
    if len(mask) != region.width * region.height:
        raise ValueError(f"selection mask has {len(mask)} bytes; expected {region.width * region.height}")
    if not mask.strip(b"\xff"):
        return None
    if not mask.strip(b"\x00"):
        raise UnsupportedImage("nothing is selected inside the active layer")
    return mask


def mask_as_alpha(pixels, fmt, mask):
    """``pixels`` (4 channels, alpha last) with each alpha multiplied by the mask's value / 255.

    A new layer holding a result made this way composites over its source exactly like the
    result blended with the source through the mask, and is transparent outside the selection.
    """
    size, code = protocol.DTYPE_SIZES[fmt["dtype"]], STRUCT_CODES[fmt["dtype"]]
    data, count, stride = bytearray(pixels), len(mask), 4 * size
    if len(data) != count * stride:
        raise ValueError(f"{len(data)} pixel bytes do not match a {count}-pixel mask")
    alpha = bytearray(count * size)
    for byte in range(size):   # gather each pixel's alpha value (the 4th channel)
        alpha[byte::size] = data[3 * size + byte::stride]
    values = struct.unpack(f"<{count}{code}", alpha)
    if code in "BH":
        values = [(value * weight + 127) // 255 for value, weight in zip(values, mask)]
    else:
        values = [value * weight / 255 for value, weight in zip(values, mask)]
    alpha = struct.pack(f"<{count}{code}", *values)
    for byte in range(size):
        data[3 * size + byte::stride] = alpha[byte::size]
    return bytes(data)
