"""Image quality metrics of the super-resolution literature: PSNR and SSIM on the Y channel,
a measure of checkerboard artefacts (:func:`grid_energy`), one of texture an upscaler
invents on flat areas (:func:`invented_texture`), and two of style nets' artefacts: lines along
the image's edge (:func:`edge_ratio`) and flat white patches that look like holes (:func:`blown_patches`).

Conventions (those of the standard Set5/Set14 benchmark, see ``shared/docs/sr-eval-protocol.md``):
images are numpy arrays on the 0..255 scale (uint8 or float), RGB ``HxWx3`` or one channel
``HxW``; colour images are compared on luma Y (ITU-R BT.601, studio range); ``shave`` pixels
(usually the SR scale) are cut from every border before measuring.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def rgb_to_y(rgb):
    """BT.601 luma of a 0..255 RGB ``HxWx3`` array: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.

    Returns float64 ``HxW`` in 16..235 (not rounded)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _luma(image, shave):
    """One image as a float64 2-D array (Y for colour input), borders shaved."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = rgb_to_y(image)
    elif image.ndim != 2:
        raise ValueError(f"expected HxW or HxWx3 arrays, got shape {image.shape}")
    image = image.astype(np.float64)
    if shave:
        if min(image.shape) <= 2 * shave:
            raise ValueError(f"image {image.shape} too small to shave {shave} pixels from each border")
        image = image[shave:-shave, shave:-shave]
    return image


def _prepare(a, b, shave):
    """Both images as float64 2-D arrays (Y for colour input), borders shaved."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return _luma(a, shave), _luma(b, shave)


def psnr(a, b, shave=0, data_range=255.0):
    """Peak signal-to-noise ratio in dB (Y channel for colour input).

    Identical images give ``math.inf``."""
    a, b = _prepare(a, b, shave)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    """Normalised 1-D Gaussian of ``size`` taps (float64 tensor); SSIM's 2-D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x, g):
    """Separable 'valid' Gaussian filtering of a 1x1xHxW tensor."""
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    return F.conv2d(x, g.view(1, 1, -1, 1))


def ssim(a, b, shave=0, data_range=255.0):
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, averaged over all window positions that fit inside the image
    (Y channel for colour input)."""
    a, b = _prepare(a, b, shave)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"image {a.shape} smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    g = gaussian_window()
    x = torch.from_numpy(a)[None, None]
    y = torch.from_numpy(b)[None, None]
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    var_x = _blur(x * x, g) - mu_x ** 2
    var_y = _blur(y * y, g) - mu_y ** 2
    cov = _blur(x * y, g) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def grid_energy(image, period, shave=0):
    """Share of an image's luma power at the frequencies of a pattern repeating every ``period``
    pixels: the checkerboard an x``period`` upscaler can leave (a fixed pattern, not blockiness).

    The shaved image, its mean removed and Hann-windowed against edge leakage, is Fourier
    transformed; the result is the power at the ``period**2 - 1`` frequencies ``(i/period,
    j/period)`` cycles per pixel (not both 0) over the total power (0 for a flat image). A photo
    has some power there too, so compare an upscale's value with its original's."""
    y = _luma(image, shave)
    height, width = (side - side % period for side in y.shape)
    y = y[:height, :width]
    y = (y - y.mean()) * np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(np.fft.fft2(y)) ** 2
    total = float(power.sum())
    if total == 0.0:
        return 0.0
    rows, cols = np.arange(period) * height // period, np.arange(period) * width // period
    return float(power[np.ix_(rows, cols)].sum() - power[0, 0]) / total


def edge_ratio(image, depth=8):
    """How strongly an HxWxC image's outermost row or column stands out, at the worst side: the
    mean step from it to the next line over the mean step between the ``depth`` lines after that.
    About 1 when the edge looks like what lies inside it; a line along the edge gives more."""
    image = np.asarray(image, np.float64)
    ratios = []
    for lines in (image, image[::-1], image.transpose(1, 0, 2), image.transpose(1, 0, 2)[::-1]):
        steps = np.abs(np.diff(lines[:depth + 2], axis=0)).mean(axis=(1, 2))
        ratios.append(float(steps[0] / steps[1:].mean()))
    return max(ratios)


FLAT_WINDOW = 9        # side of the window whose luma spread decides "flat"
FLAT_SPREAD = 3.0      # grey levels (luma std in that window) below which a pixel is flat
FIT_WINDOW = 17        # side of the window in which the original's detail is fitted to the upscaler's
DETAIL_SIGMA = 1.0     # Gaussian whose residual is "high frequency": periods up to about 6 pixels


def _filter(y, kernel):
    """``y`` (2-D float64) convolved with the separable 1-D ``kernel`` along both axes, edges mirrored."""
    r = (len(kernel) - 1) // 2
    height, width = y.shape
    padded = np.pad(y, r, mode="reflect")
    rows = sum(w * padded[:, i:i + width] for i, w in enumerate(kernel))
    return sum(w * rows[i:i + height] for i, w in enumerate(kernel))


def _box(y, size):
    return _filter(y, np.full(size, 1.0 / size))


def _high_pass(y, sigma=DETAIL_SIGMA):
    x = np.arange(-int(3 * sigma + 0.5), int(3 * sigma + 0.5) + 1)
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return y - _filter(y, g / g.sum())


def luma_spread(image, window=FLAT_WINDOW):
    """Luma std of ``image`` (RGB or luma, 0..255) in the ``window``-sized square around each pixel."""
    y = _luma(image, 0)
    mean = _box(y, window)
    return np.sqrt(np.maximum(_box(y * y, window) - mean ** 2, 0))


def flat_mask(hr, spread=FLAT_SPREAD, window=FLAT_WINDOW):
    """Pixels of ``hr`` (RGB or luma, 0..255) whose whole ``window``-sized neighbourhood is flat: every
    pixel around them has a luma std below ``spread`` in its own window. A boolean ``HxW`` array."""
    steep = (luma_spread(hr, window) >= spread).astype(np.float64)
    return _box(steep, window) < 0.5 / window ** 2


def invented_texture(upscaled, bicubic, hr, mask, sigma=DETAIL_SIGMA):
    """Fine texture an upscale adds on ``mask`` (e.g. :func:`flat_mask`) that is not the original's:
    RMS in grey levels of luma.

    ``d``, what the upscale adds to ``bicubic`` above a Gaussian of ``sigma`` pixels (larger:
    coarser patterns such as bands too), is fitted in every
    :data:`FIT_WINDOW`-sized window by a multiple of ``h``, what the original ``hr`` has there
    that bicubic lacks; what the fit leaves is invented. The original itself and bicubic score 0;
    a crosshatch or noise scores its own strength. All images 0..255, the same size."""
    base = _high_pass(_luma(bicubic, 0), sigma)
    d = _high_pass(_luma(upscaled, 0), sigma) - base
    h = _high_pass(_luma(hr, 0), sigma) - base
    dd, dh, hh = _box(d * d, FIT_WINDOW), _box(d * h, FIT_WINDOW), _box(h * h, FIT_WINDOW)
    left = np.maximum(dd - dh ** 2 / np.maximum(hh, 1e-12), 0)
    return float(np.sqrt(left[mask].mean())) if mask.any() else 0.0


def detail_ratio(image, hr, mask):
    """High-frequency luma RMS (above :data:`DETAIL_SIGMA`) of ``image`` over that of ``hr`` on
    ``mask``: how crisp an upscale's edges are (1 = as crisp as the original)."""
    ours, theirs = _high_pass(_luma(image, 0))[mask], _high_pass(_luma(hr, 0))[mask]
    return float(np.sqrt((ours ** 2).mean() / max((theirs ** 2).mean(), 1e-12)))


BLOWN_LEVEL = 240      # full-range luma (of 255) from which a pixel counts as near white
BLOWN_SPREAD = 3.0     # grey levels: the most luma std in a 5 x 5 window that still counts as flat
BLOWN_WIDTH = 15       # px: the smallest patch counted, as the side of a square that fits inside it


def _components(mask):
    """Labels (1, 2, ...; 0 off ``mask``) of the 4-connected regions of a boolean ``HxW`` array, and their count."""
    labels = np.zeros(mask.shape, np.int32)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start], stack = count, [start]
        while stack:
            i, j = stack.pop()
            for n in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if 0 <= n[0] < mask.shape[0] and 0 <= n[1] < mask.shape[1] and mask[n] and not labels[n]:
                    labels[n] = count
                    stack.append(n)
    return labels, count


def blown_mask(image, photo):
    """The flat, near-white patches an RGB ``image`` (0..255) has where the ``photo`` it was made from
    is not near white, as a boolean ``HxW`` array, and their number: the round white "holes" some
    style nets paint (``wave``'s, about 40 px across at 1024²). A patch is a connected region of
    near-white (luma at least :data:`BLOWN_LEVEL`), flat (:data:`BLOWN_SPREAD`) pixels wide enough
    to hold a :data:`BLOWN_WIDTH`-px square inside the image. Photos' own white skies and walls are
    left out; a net's white strokes are not flat."""
    def near_white(rgb):
        return (rgb_to_y(rgb) - 16.0) * 255.0 / 219.0 >= BLOWN_LEVEL

    white = near_white(image) & (luma_spread(image, 5) <= BLOWN_SPREAD) & ~near_white(photo)
    cores = _box(white.astype(np.float64), BLOWN_WIDTH) > 1 - 1e-9
    half = BLOWN_WIDTH // 2    # squares reaching past the image's edge do not count
    cores[:half], cores[-half:], cores[:, :half], cores[:, -half:] = False, False, False, False
    if not cores.any():        # the usual case: no labelling of the white pixels needed
        return np.zeros_like(white), 0
    labels, _ = _components(white)
    patches = np.unique(labels[cores])
    return np.isin(labels, patches[patches > 0]), len(patches[patches > 0])


def blown_patches(image, photo):
    """How many patches :func:`blown_mask` finds."""
    return blown_mask(image, photo)[1]


def to_uint8_array(image):
    """A PIL image, an HxWx3 array (float: [0, 1]; integer: 0..255) or a 1x3xHxW / 3xHxW tensor
    in [0, 1] as a uint8 HxWx3 array (rounded, clipped): what a saved PNG would hold."""
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected a single image, got a batch of {t.shape[0]}")
            t = t[0]
        image = t.permute(1, 2, 0).numpy()
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr * 255.0
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)
