"""Both plug-ins check a daemon's result (size, format, byte count) with the vendored client's
``Result.check`` before the document changes (the check itself: tests/test_client.py)."""

import pytest

from installed_plugins import gimp_module, krita_module

from backend import protocol
from backend.client import Result

gimp_pixels = gimp_module("gimp_pixels")   # it imports the vendored protocol

RGBA16 = {"dtype": "u16", "channels": "RGBA", "transfer": "srgb"}
HALF = {"dtype": "f16", "channels": "RGBA", "transfer": "srgb"}   # same byte count as u16: only the format tells


def reply(width, height, fmt, size):
    return Result({"width": width, "height": height, "format": fmt}, memoryview(bytes(size)))


def test_gimp_accepts_exactly_the_image_it_asked_for():
    gimp_pixels.check_result(reply(8, 6, RGBA16, 8 * 6 * 8), RGBA16, 4, 3, scale=2)


@pytest.mark.parametrize("result, words", [
    (reply(8, 5, RGBA16, 8 * 5 * 8), "8x5"),                       # wrong size
    (reply(4, 3, RGBA16, 4 * 3 * 8), "4x3"),                       # the scale not applied
    (reply(8, 6, HALF, 8 * 6 * 8), "format"),                      # same bytes, other format
    (reply(8, 6, RGBA16, 8 * 6 * 8 - 1), "bytes"),                 # truncated pixel frame
])
def test_gimp_refuses_a_result_that_is_not_what_it_asked_for(result, words):
    with pytest.raises(protocol.BadPixels, match=words):
        gimp_pixels.check_result(result, RGBA16, 4, 3, scale=2)


def test_krita_refuses_a_result_of_another_size_format_or_byte_count():
    """The Krita plug-in checks with its vendored client's ``Result.check``, in Krita's pixel formats."""
    pixels, vendored = krita_module("pixels"), krita_module("brushwork_client.client")
    fmt = pixels.pixel_format("RGBA", "U16", "sRGB-elle-V2-g10.icc")

    def result(width, size, returned=fmt):
        return vendored.Result({"width": width, "height": 3, "format": returned}, memoryview(bytes(size)))
    result(4, 4 * 3 * 8).check(4, 3, fmt)
    for given, words in [(result(3, 3 * 3 * 8), "returned a 3x3 image; expected 4x3"), (result(4, 95), "95 bytes"),
                         (result(4, 4 * 3 * 8, dict(fmt, dtype="f16")), "format")]:
        with pytest.raises(krita_module("brushwork_client.protocol").BadPixels, match=words):
            given.check(4, 3, fmt)
