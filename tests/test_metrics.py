"""PSNR, SSIM, the BT.601 luma and the grid energy of trainer.metrics against analytic and independent references."""

import math

import numpy as np
import pytest
import torch

from trainer import metrics


def smooth_image(height=48, width=40, seed=0):
    """A float64 test image in [20, 235]: gradients plus texture, no clipping when noise is added."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 120 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.uniform(-20, 20, (height, width))
    return np.clip(base, 20, 235)


def random_signs(shape, seed=1):
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=shape)


# ----------------------------------------------------------------------------- luma

@pytest.mark.parametrize("rgb, expected", [
    ((0, 0, 0), 16.0),
    ((255, 255, 255), 235.0),
    ((255, 0, 0), 16 + 65.481),
    ((0, 255, 0), 16 + 128.553),
    ((0, 0, 255), 16 + 24.966),
    ((128, 128, 128), 16 + 219 * 128 / 255),
])
def test_luma_of_known_colours(rgb, expected):
    image = np.full((2, 3, 3), rgb, dtype=np.uint8)
    y = metrics.rgb_to_y(image)
    assert y.shape == (2, 3)
    np.testing.assert_allclose(y, expected, atol=1e-9)


def test_luma_rejects_non_rgb():
    with pytest.raises(ValueError, match="HxWx3"):
        metrics.rgb_to_y(np.zeros((4, 4, 4)))


# ----------------------------------------------------------------------------- PSNR

def test_psnr_of_identical_images_is_infinite():
    image = smooth_image()
    assert metrics.psnr(image, image.copy()) == math.inf


@pytest.mark.parametrize("k", [1.0, 4.0, 10.0])
def test_psnr_of_plus_minus_k_noise_matches_analytic_value(k):
    clean = smooth_image()
    noisy = clean + k * random_signs(clean.shape)        # every error is exactly +-k: MSE = k^2
    expected = 10 * math.log10(255 ** 2 / k ** 2)
    assert metrics.psnr(noisy, clean) == pytest.approx(expected, abs=0.01)


def test_psnr_of_colour_images_is_measured_on_luma():
    clean = np.stack([smooth_image(seed=s) for s in range(3)], axis=-1)
    k = 5.0
    noisy = clean + k * random_signs(clean.shape[:2])[..., None]   # same error on R, G and B
    luma_error = k * (65.481 + 128.553 + 24.966) / 255            # = 219/255 k on Y
    expected = 10 * math.log10(255 ** 2 / luma_error ** 2)
    assert metrics.psnr(noisy, clean) == pytest.approx(expected, abs=0.01)


def test_shave_ignores_the_border():
    clean = smooth_image()
    noisy = clean.copy()
    noisy[:3, :] += 30
    noisy[:, -3:] -= 30
    assert metrics.psnr(noisy, clean) < 30
    assert metrics.psnr(noisy, clean, shave=3) == math.inf
    assert metrics.ssim(noisy, clean, shave=3) == pytest.approx(1.0, abs=1e-12)


def test_mismatched_or_tiny_images_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="shave"):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 8)), shave=4)
    with pytest.raises(ValueError, match="SSIM window"):
        metrics.ssim(np.zeros((10, 30)), np.zeros((10, 30)))


# ----------------------------------------------------------------------------- SSIM

def reference_ssim(a, b, size=11, sigma=1.5, data_range=255.0):
    """Textbook SSIM: an explicit 2-D Gaussian window applied to every 11x11 patch (numpy only)."""
    offsets = np.arange(size) - (size - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    window /= window.sum()
    pa = np.lib.stride_tricks.sliding_window_view(a, (size, size))
    pb = np.lib.stride_tricks.sliding_window_view(b, (size, size))
    mu_a = np.einsum("ijkl,kl->ij", pa, window)
    mu_b = np.einsum("ijkl,kl->ij", pb, window)
    var_a = np.einsum("ijkl,kl->ij", (pa - mu_a[..., None, None]) ** 2, window)
    var_b = np.einsum("ijkl,kl->ij", (pb - mu_b[..., None, None]) ** 2, window)
    cov = np.einsum("ijkl,kl->ij", (pa - mu_a[..., None, None]) * (pb - mu_b[..., None, None]), window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_ssim_of_identical_images_is_one():
    image = smooth_image()
    assert metrics.ssim(image, image.copy()) == pytest.approx(1.0, abs=1e-12)


def test_ssim_drops_as_noise_grows():
    clean = smooth_image()
    noise = np.random.default_rng(2).normal(size=clean.shape)
    values = [metrics.ssim(clean + sigma * noise, clean) for sigma in (2, 8, 32)]
    assert 1.0 > values[0] > values[1] > values[2] > 0.0


@pytest.mark.parametrize("sigma", [3.0, 20.0])
def test_ssim_matches_an_independent_reference(sigma):
    clean = smooth_image()
    noisy = clean + sigma * np.random.default_rng(3).normal(size=clean.shape)
    assert metrics.ssim(noisy, clean) == pytest.approx(reference_ssim(noisy, clean), abs=1e-9)


def test_ssim_of_colour_images_uses_luma():
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 255, (24, 30, 3))
    b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255)
    expected = reference_ssim(metrics.rgb_to_y(a), metrics.rgb_to_y(b))
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-9)


# ----------------------------------------------------------------------------- conversions

def test_to_uint8_array_accepts_tensors_floats_and_bytes():
    values = np.array([[[0.0, 0.5, 1.0], [1.2, -0.1, 0.25]]], dtype=np.float32)   # 1x2x3
    expected = np.array([[[0, 128, 255], [255, 0, 64]]], dtype=np.uint8)
    np.testing.assert_array_equal(metrics.to_uint8_array(values), expected)
    tensor = torch.from_numpy(values).permute(2, 0, 1)[None]
    np.testing.assert_array_equal(metrics.to_uint8_array(tensor), expected)
    np.testing.assert_array_equal(metrics.to_uint8_array(expected), expected)


def test_grid_energy_of_a_flat_image_is_zero_and_of_a_checkerboard_nearly_all():
    assert metrics.grid_energy(np.full((32, 32), 90.0), 2) == 0.0
    checkerboard = 128 + 50 * (-1.0) ** np.add.outer(np.arange(64), np.arange(64))
    assert metrics.grid_energy(checkerboard, 2) > 0.4   # the window spreads the rest to neighbouring bins
    assert metrics.grid_energy(checkerboard, 4) == pytest.approx(metrics.grid_energy(checkerboard, 2))


def test_grid_energy_finds_a_faint_pattern_repeating_every_period_pixels():
    small = smooth_image(24, 20)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(small)[None, None], scale_factor=4,
                                             mode="bicubic", align_corners=False)[0, 0].numpy()
    pattern = np.tile(np.random.default_rng(0).uniform(-2, 2, (4, 4)), (24, 20))   # +-2 of 255
    assert metrics.grid_energy(smooth + pattern, 4, shave=4) > 20 * metrics.grid_energy(smooth, 4, shave=4)
    assert metrics.grid_energy(smooth + pattern, 4) == pytest.approx(
        metrics.grid_energy(np.dstack([smooth + pattern] * 3), 4))


# ----------------------------------------------------------------------------- invented texture

def flat_scene(seed=0):
    """A 96x96 'original' (0..255): a flat left half with fine grain (std 1), a step edge, a textured right half;
    and its bicubic x4 upscale from 24x24."""
    rng = np.random.default_rng(seed)
    hr = np.full((96, 96), 110.0) + rng.normal(0, 1.0, (96, 96))
    hr[:, 48:] = 180 + 25 * np.sin(np.arange(48) / 2.0)[None, :] * np.cos(np.arange(96) / 3.0)[:, None]
    small = torch.nn.functional.avg_pool2d(torch.from_numpy(hr)[None, None], 4)
    bicubic = torch.nn.functional.interpolate(small, scale_factor=4, mode="bicubic", align_corners=False)[0, 0]
    return hr, bicubic.numpy()


def test_flat_mask_keeps_the_flat_half_away_from_the_edge():
    hr, _ = flat_scene()
    flat = metrics.flat_mask(hr)
    assert flat[:, 5:36].all() and not flat[:, 42:].any()


def test_invented_texture_sees_a_crosshatch_but_not_the_originals_own_grain():
    hr, bicubic = flat_scene()
    flat = metrics.flat_mask(hr)
    yy, xx = np.mgrid[0:96, 0:96]
    crosshatch = 1.5 * np.sin(2 * np.pi * (xx + yy) / 3) + 1.5 * np.sin(2 * np.pi * (xx - yy) / 3)
    assert metrics.invented_texture(bicubic, bicubic, hr, flat) == 0
    assert metrics.invented_texture(hr, bicubic, hr, flat) == pytest.approx(0, abs=1e-6)  # the grain is real
    # the crosshatch's own RMS (1.5) above a sigma-1 Gaussian, which passes most of a 3-pixel period
    assert 1.0 < metrics.invented_texture(bicubic + crosshatch, bicubic, hr, flat) < 1.6
    halfway = bicubic + 0.5 * (hr - bicubic)                 # half the original's detail: nothing invented
    assert metrics.invented_texture(halfway, bicubic, hr, flat) < 0.05
    assert metrics.invented_texture(hr + crosshatch, bicubic, hr, flat) > 1.0


def test_detail_ratio_is_one_for_the_original_and_lower_for_a_blurred_upscale():
    hr, bicubic = flat_scene()
    edges = metrics.luma_spread(hr) >= 20
    assert metrics.detail_ratio(hr, hr, edges) == pytest.approx(1)
    assert metrics.detail_ratio(bicubic, hr, edges) < 0.7


def test_blown_patches_counts_flat_white_discs_the_photo_does_not_have():
    rng = np.random.default_rng(3)
    photo = np.repeat(rng.uniform(60, 200, (128, 160, 1)), 3, axis=2)     # grainy grey texture
    yy, xx = np.mgrid[0:128, 0:160]

    def disc(row, col, radius):
        return (yy - row) ** 2 + (xx - col) ** 2 <= radius ** 2

    stylised = photo.copy()
    stylised[disc(40, 40, 20)] = 255
    stylised[disc(90, 120, 18)] = [255, 255, 238]
    assert metrics.blown_patches(photo, photo) == 0
    assert metrics.blown_patches(stylised, photo) == 2
    highlight = photo.copy()
    highlight[disc(40, 40, 5)] = 255
    assert metrics.blown_patches(highlight, photo) == 0           # too small to be a hole
    white_strokes = photo.copy()
    white_strokes[disc(40, 40, 20)] = rng.uniform(200, 255, (disc(40, 40, 20).sum(), 1))
    assert metrics.blown_patches(white_strokes, photo) == 0       # white but not flat
    assert metrics.blown_patches(stylised, stylised) == 0         # the photo's own white
