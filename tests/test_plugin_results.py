"""Both plug-ins check a daemon's result (size, format, byte count) before the document changes."""

from types import SimpleNamespace

import pytest

from plugin_gimp.brushwork import gimp_pixels
from plugin_krita.brushwork import pixels as krita_pixels

RGBA16 = {"dtype": "u16", "channels": "RGBA", "transfer": "srgb"}
HALF = {"dtype": "f16", "channels": "RGBA", "transfer": "srgb"}   # same byte count as u16: only the format tells


def reply(width, height, fmt, size):
    return SimpleNamespace(width=width, height=height, format=fmt, pixels=memoryview(bytes(size)))


def test_gimp_accepts_exactly_the_image_it_asked_for():
    gimp_pixels.check_result(reply(8, 6, RGBA16, 8 * 6 * 8), RGBA16, 4, 3, scale=2)


@pytest.mark.parametrize("result, words", [
    (reply(8, 5, RGBA16, 8 * 5 * 8), "8x5"),                       # wrong size
    (reply(8, 6, HALF, 8 * 6 * 8), "format"),                      # same bytes, other format
    (reply(8, 6, RGBA16, 8 * 6 * 8 - 1), "bytes"),                 # truncated pixel frame
    (reply(8, 6, RGBA16, 8 * 6 * 8 + 8), "bytes"),                 # too long
])
def test_gimp_refuses_a_result_that_is_not_what_it_asked_for(result, words):
    with pytest.raises(ValueError, match=words):
        gimp_pixels.check_result(result, RGBA16, 4, 3, scale=2)


def test_krita_refuses_a_result_in_another_format_even_with_the_right_byte_count():
    data = bytes(4 * 3 * 8)
    krita_pixels.check_result(data, 4, 3, RGBA16, 4, 3, returned_format=RGBA16)
    with pytest.raises(ValueError, match="format"):
        krita_pixels.check_result(data, 4, 3, RGBA16, 4, 3, returned_format=HALF)
