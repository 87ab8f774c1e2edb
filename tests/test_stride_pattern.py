"""The stride-grid pattern filter (backend.stride_pattern) and the engine's use of it: a distilled
net's output keeps its photo's 4-px pattern and no pattern of its own; a full net's is left as
the net made it."""

import numpy as np
import pytest

from backend.engine import Engine
from backend.model_store import ModelStore
from backend.stride_pattern import phase_pattern, replace_phase_pattern
from helpers import random_image


def screen_door(height, width, amplitude=10 / 255, seed=1):
    """A fixed ±``amplitude`` pattern repeating every 4 px from the top-left (H x W x 3 float32)."""
    cell = np.random.default_rng(seed).uniform(-amplitude, amplitude, (4, 4, 3)).astype(np.float32)
    return np.tile(cell, (-(-height // 4), -(-width // 4), 1))[:height, :width]


def test_phase_pattern_finds_a_pattern_repeating_every_4_px_and_ignores_the_leftover_rows():
    pattern = screen_door(64, 64)
    image = np.full((66, 67, 3), 0.5, np.float32)
    image[:64, :64] += pattern
    image[64:, :] = 1.0      # past the last whole 4 x 4 block: left out
    assert np.allclose(phase_pattern(image), pattern[:4, :4] - pattern[:4, :4].mean(axis=(0, 1)), atol=1e-6)


def test_replacing_the_pattern_takes_the_screen_door_out_and_keeps_the_photos():
    photo = random_image(61, 70, seed=3) * 0.5 + 0.25
    photo += screen_door(61, 70, amplitude=1 / 255, seed=2)         # the photo's own faint pattern
    texture = random_image(61, 70, seed=4) * 0.5 + 0.25              # the "style", no pattern of its own
    result = texture + screen_door(61, 70)
    cleaned = replace_phase_pattern(result.copy(), photo)
    assert np.abs(phase_pattern(cleaned) - phase_pattern(photo)).max() < 1e-6
    assert np.abs(phase_pattern(result) - phase_pattern(photo)).max() > 5 / 255
    change = cleaned - result          # the same change at every place of the grid: nothing else moves
    assert np.allclose(change, np.tile(change[:4, :4], (16, 18, 1))[:61, :70], atol=1e-6)
    assert np.abs(change).max() < 12 / 255


@pytest.fixture(scope="module")
def engine():
    return Engine(ModelStore([]), device="cpu", precision="fp32")


def test_a_lite_nets_output_has_its_photos_pattern(engine):
    """composition_vii_lite, bundled: its faint rows are what the filter is for."""
    photo = random_image(90, 77, seed=5)
    result = engine.stylize(photo, None, "composition_vii_lite")[0]
    inside = (result > 0.02) & (result < 0.98)     # the filter's change is clipped at 0 and 1
    assert inside.mean() > 0.9
    unclipped = replace_phase_pattern(result.copy(), photo)   # already clean: no further change
    assert np.abs(unclipped - result)[inside].max() < 1e-5


def test_a_full_nets_output_is_not_filtered(engine):
    photo = random_image(90, 77, seed=5)
    result = engine.stylize(photo, None, "composition_vii")[0]
    filtered = replace_phase_pattern(result.copy(), photo)
    assert np.abs(filtered - result).max() > 1 / 255
