"""Tile layout and blending: tiles cover the image, overlaps cross-fade to exactly one."""

import numpy as np
import pytest

from backend import tiling
from backend.protocol import BrushworkError
from helpers import random_image


@pytest.mark.parametrize("length,tile,context,blend,align", [
    (1000, 256, 32, 32, 4), (257, 128, 16, 8, 1), (4096, 2048, 32, 32, 4), (100, 256, 32, 32, 4)])
def test_spans_cover_the_axis_with_aligned_blend_overlaps(length, tile, context, blend, align):
    spans = tiling.spans(length, tile, context, blend, align)
    assert spans[0][2] == 0 and spans[-1][3] == length
    for read0, read1, keep0, keep1 in spans:
        assert 0 <= read0 <= keep0 < keep1 <= read1 <= length
        assert read1 - read0 <= tile
        assert read0 % align == 0 and keep0 % align == 0
        assert keep0 - read0 in (0, context)
    for (_, _, _, end), (_, _, start, _) in zip(spans, spans[1:]):
        assert end - start == blend


def test_identity_through_tiles_gives_the_image_back():
    image = random_image(300, 410)
    out = tiling.run_tiled(lambda tile: tile.copy(), image, 1, 128, 16, 16, 4)
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_upscaling_through_tiles_matches_the_whole_image():
    image = random_image(90, 70)

    def nearest(tile):
        return tile.repeat(2, axis=0).repeat(2, axis=1)

    out = tiling.run_tiled(nearest, image, 2, 48, 8, 8)
    np.testing.assert_allclose(out, nearest(image), atol=1e-6)


def test_progress_and_cancel():
    image = random_image(200, 200)
    seen = []
    tiling.run_tiled(lambda t: t, image, 1, 96, 8, 8, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, len(seen)) for i in range(1, len(seen) + 1)] and len(seen) > 1
    with pytest.raises(BrushworkError) as err:
        tiling.run_tiled(lambda t: t, image, 1, 96, 8, 8, is_cancelled=lambda: True)
    assert err.value.code == "cancelled"


def test_tile_too_small_for_its_margins_is_refused():
    with pytest.raises(ValueError, match="too small"):
        tiling.spans(1000, 64, 24, 16, 4)
