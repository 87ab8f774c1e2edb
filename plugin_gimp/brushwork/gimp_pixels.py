"""GIMP pixel precisions <-> brushwork wire formats, and rectangle arithmetic.

Pure Python (no GIMP, no numpy) so it is unit-tested outside GIMP; byte counts and the check
of a daemon's result are the vendored client's. A GIMP precision is
named like the ``Gimp.Precision`` enum member: ``"U8_NON_LINEAR"``, ``"HALF_LINEAR"``, ...
Pixels are read from and written to GEGL buffers in a babl format of the drawable's own
component type, so nothing is silently reduced to 8 bits:

    U8 -> u8, U16 -> u16, HALF -> f16, FLOAT -> f32, U32 and DOUBLE -> f32 (the wire has no
    32-bit integer or double type; f32 keeps 24 bits of the U32 range)

LINEAR precisions travel as linear light, NON_LINEAR and PERCEPTUAL ones as sRGB-encoded.
"""

import protocol   # the vendored copy beside this file

# component part of the precision name -> (babl type name, wire dtype)
_COMPONENTS = {
    "U8": ("u8", "u8"),
    "U16": ("u16", "u16"),
    "U32": ("float", "f32"),
    "HALF": ("half", "f16"),
    "FLOAT": ("float", "f32"),
    "DOUBLE": ("float", "f32"),
}
# transfer part of the precision name -> (babl component prefix style, wire transfer)
_TRANSFERS = {
    "LINEAR": ("linear", "linear"),
    "NON_LINEAR": ("gamma", "srgb"),
    "PERCEPTUAL": ("gamma", "srgb"),
}

SCALES = protocol.SR_SCALES


def split_precision(precision):
    """``"U16_NON_LINEAR"`` (or the enum nick ``"u16-non-linear"``) -> ``("U16", "NON_LINEAR")``.

    Raises ValueError for unknown names.
    """
    name = str(precision).upper().replace("-", "_")
    component, _, transfer = name.partition("_")
    if component not in _COMPONENTS or transfer not in _TRANSFERS:
        raise ValueError(f"unsupported GIMP precision {precision!r}; expected e.g. U8_NON_LINEAR or FLOAT_LINEAR")
    return component, transfer


def pixel_format(precision, has_alpha):
    """The babl format name and wire format dict to move a drawable's pixels in.

    >>> pixel_format("U16_NON_LINEAR", True)
    ("R'G'B'A u16", {'dtype': 'u16', 'channels': 'RGBA', 'transfer': 'srgb'})
    """
    component, transfer = split_precision(precision)
    babl_type, dtype = _COMPONENTS[component]
    style, wire_transfer = _TRANSFERS[transfer]
    letters = "RGBA" if has_alpha else "RGB"
    components = letters if style == "linear" else "".join(c + "'" if c != "A" else c for c in letters)
    fmt = {"dtype": dtype, "channels": letters, "transfer": wire_transfer}
    return f"{components} {babl_type}", fmt


def parse_scale(value):
    """An upscale factor from a dialog/PDB value (``"4"``, ``"x4"``, ``4``); ValueError if not 2, 4 or 8."""
    text = str(value).strip().lower().lstrip("x")
    if not text.isdigit() or int(text) not in SCALES:
        raise ValueError(f"upscale factor must be one of {', '.join(map(str, SCALES))}, got {value!r}")
    return int(text)


def selection_rect(mask_intersect):
    """The area to process from ``drawable.mask_intersect()``'s ``(ok, x, y, w, h)``, or None.

    ``ok`` is False when the selection misses the drawable: there is nothing to do then.
    Without a selection GIMP reports the whole drawable.
    """
    ok, x, y, width, height = mask_intersect
    if not ok or width <= 0 or height <= 0:
        return None
    return int(x), int(y), int(width), int(height)


def check_result(result, fmt, width, height, scale=1):
    """Raise protocol.BadPixels unless the daemon's ``result`` (a client Result) is the image
    asked for: ``scale`` times ``width`` x ``height``, in ``fmt``, with exactly the bytes those
    need (the client's ``Result.check``). Called before anything is written, so a bad reply
    never reaches GIMP's buffers."""
    result.check(width * scale, height * scale, fmt)
