"""Training data: the SR degradation, finding images, the crop sampler (flip, zoom, cache) and the
hold-out split."""

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_training import CONTENT
from trainer.data import CropSampler, degrade, find_images, gaussian_blur, split_holdout


def write_png(path, seed, size=(40, 30)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


# ---- data ---------------------------------------------------------------------------------

def test_gaussian_blur_of_an_impulse_has_the_sigma_1_taps():
    image = torch.zeros(1, 1, 15, 15)
    image[0, 0, 7, 7] = 1.0
    blurred = gaussian_blur(image, 1.0)
    taps = [math.exp(-k * k / 2) for k in range(-3, 4)]
    centre = 1 / sum(taps)
    assert blurred[0, 0, 7, 7].item() == pytest.approx(centre ** 2, rel=1e-5)
    assert blurred[0, 0, 7, 8].item() == pytest.approx(centre ** 2 * math.exp(-0.5), rel=1e-5)
    assert blurred.sum().item() == pytest.approx(1.0, rel=1e-5)


def test_degrade_shape_and_a_known_value():
    # A horizontal ramp survives the blur and bicubic exactly (away from borders):
    # LR pixel j samples the HR ramp at x = scale * j + (scale - 1) / 2.
    x = torch.arange(64, dtype=torch.float32) / 100
    hr = x.view(1, 1, 1, 64).expand(2, 3, 32, 64).contiguous()
    low = degrade(hr, 4)
    assert low.shape == (2, 3, 8, 16)
    assert low[0, 1, 4, 7].item() == pytest.approx((4 * 7 + 1.5) / 100, abs=1e-5)
    # the blur matters: an HR checkerboard of period 2 is all but flattened
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2
    assert degrade(checker.float().expand(1, 3, 32, 32), 2).std() < 0.05
    with pytest.raises(ValueError, match="divisible"):
        degrade(torch.rand(1, 3, 30, 32), 4)


def test_find_images_is_recursive_and_complains_when_empty(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_png(tmp_path / "a" / "b" / "one.png", 0)
    write_png(tmp_path / "two.PNG", 1)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in find_images(tmp_path)] == ["one.png", "two.PNG"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_images(tmp_path / "empty")


def test_sampler_is_reproducible_and_skips_unreadable_files_with_one_warning(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"good{i}.png", i)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    paths = find_images(tmp_path)
    sampler = CropSampler(paths, 24, seed=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crops = [sampler.sample(n) for n in range(16)]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "broken.jpg" in messages[0]
    assert all(c.shape == (3, 24, 24) for c in crops)
    again = CropSampler(paths, 24, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(again.batch(3, 4), torch.stack(crops[3:7]))
        assert not torch.equal(CropSampler(paths, 24, seed=6).batch(3, 4), again.batch(3, 4))


def test_flip_mirrors_about_half_the_crops(tmp_path):
    write_png(tmp_path / "one.png", 0, size=(24, 24))   # the crop is the whole image: only the flip varies
    original = CropSampler(find_images(tmp_path), 24, seed=1).sample(0)
    crops = CropSampler(find_images(tmp_path), 24, seed=1, flip=True).batch(0, 40)
    mirrored = [torch.equal(c, original.flip(-1)) for c in crops]
    assert all(m or torch.equal(c, original) for m, c in zip(mirrored, crops))
    assert 10 <= sum(mirrored) <= 30


def test_zoom_crops_at_random_scales_up_to_zoom_times_closer(tmp_path):
    # A horizontal ramp: the span of values in a crop shrinks as the crop zooms in.
    ramp = np.tile(np.linspace(0, 255, 400).round().astype(np.uint8)[None, :, None], (200, 1, 3))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    paths = find_images(tmp_path)

    def spans(sampler):
        return [float(c[0].max() - c[0].min()) for c in sampler.batch(0, 30)]
    plain, zoomed = spans(CropSampler(paths, 50, seed=2)), spans(CropSampler(paths, 50, seed=2, zoom=2.0))
    assert max(plain) - min(plain) < 0.01        # always the whole height at one scale
    assert max(zoomed) == pytest.approx(max(plain), abs=0.02)    # as far out as without zoom
    assert min(zoomed) == pytest.approx(max(plain) / 2, abs=0.03)  # up to twice as close
    for bad in ({"zoom": 0.5}, {"zoom": 2.0, "resize": False}):
        with pytest.raises(ValueError, match="zoom"):
            CropSampler(paths, 50, **bad)


def test_split_holdout(tmp_path):
    paths = [tmp_path / f"im{i}.png" for i in range(6)]
    listing = tmp_path / "held.txt"
    listing.write_text("# evaluation images\nim0.png\nim3\n")
    train, held = split_holdout(paths, holdout=1, holdout_list=listing, seed=0)
    assert len(held) == 3 and {paths[0], paths[3]} <= set(held)
    assert set(train) == set(paths) - set(held)
    assert split_holdout(paths, holdout=1, seed=0) == split_holdout(paths, holdout=1, seed=0)
    with pytest.raises(ValueError, match="nothing left"):
        split_holdout(paths, holdout=6)


def test_blur_0_is_the_benchmarks_antialiased_bicubic():
    hr = torch.rand(1, 3, 64, 64)
    low = degrade(hr, 4, sigma=0)
    pil = Image.fromarray((hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((16, 16),
                                                                                                 Image.BICUBIC)
    pil = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)
    assert (low[0] - pil).abs().mean() < 0.01  # Pillow's antialiased bicubic, up to 8-bit rounding
    assert (degrade(hr, 4) - pil).abs().mean() > 0.02  # the paper's blur + plain bicubic is another degradation


def test_sampler_cache_does_not_change_samples():
    paths = find_images(CONTENT)
    cached, uncached = CropSampler(paths, 64, seed=3), CropSampler(paths, 64, seed=3, cache_bytes=0)
    for number in (0, 1, 2, 3, 7):
        assert torch.equal(cached.sample(number), uncached.sample(number))
    assert len(cached._cache) == 3 and not uncached._cache
