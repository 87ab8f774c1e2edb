"""The fixed pattern a style net can leave on its stride grid, and the filter that takes it out.

A :class:`backend.nets.StyleNet` works at a quarter of the image's resolution between its two
stride-2 convolutions and its two upsampling stages, so every output pixel has one of
``STYLE_STRIDE`` x ``STYLE_STRIDE`` places in that grid. A net can learn a brightness that
depends on the place alone: ``starry_night``'s 4-px "screen door", ``composition_vii``'s faint
rows (docs/lite_nets_log.md). Its *phase pattern* is the mean of the image at each place,
anchored at the top-left corner, minus the mean over places.

:func:`replace_phase_pattern` gives a result its photo's phase pattern instead of its own: an
image's mean at each place changes by at most a few levels, the rest of the texture not at all.
This is what a distilled net's targets get (:mod:`trainer.distill_targets`), so the engine does
the same to the distilled net's own output.
"""

import numpy as np

from backend.nets import STYLE_STRIDE


def phase_pattern(image, period=STYLE_STRIDE):
    """``period`` x ``period`` x C float64: the mean of ``image`` (H x W x C) at each place of a
    ``period``-pixel grid anchored at the top-left, minus the mean over places. Rows and columns
    past the last whole ``period`` are left out."""
    height, width = image.shape[0] - image.shape[0] % period, image.shape[1] - image.shape[1] % period
    if not (height and width):
        return np.zeros((period, period, image.shape[2]))
    rows = image[:height, :width].reshape(height // period, period, -1).sum(axis=0, dtype=np.float64)
    means = rows.reshape(period, width // period, period, -1).sum(axis=1) / (height // period * width // period)
    return means - means.mean(axis=(0, 1))


def replace_phase_pattern(result, photo, period=STYLE_STRIDE):
    """``result`` (H x W x C float32, changed in place and returned) with its :func:`phase_pattern`
    replaced by that of ``photo`` (the same shape): the difference of the two, repeated from the
    top-left corner, subtracted. Values may leave [0, 1] by as much; the caller clips."""
    change = (phase_pattern(result, period) - phase_pattern(photo, period)).astype(result.dtype)
    rows = np.tile(change, (1, -(-result.shape[1] // period), 1))[:, :result.shape[1]]   # period x W x C
    for place in range(period):     # row by row: no full-size temporary
        result[place::period] -= rows[place]
    return result
