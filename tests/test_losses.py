"""Perceptual losses against hand-computed values, and the total objective."""

import pytest
import torch

from helpers import shared_dir
from trainer.losses import (LossWeights, PerceptualLoss, feature_loss, gram_matrix, grid_loss, pixel_loss,
                            style_loss, tv_loss)
from trainer.vgg import LossNetwork

WEIGHTS = shared_dir() / "weights" / "vgg16_caffe_relu4_3.pth"


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)   # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / 4.0
    torch.testing.assert_close(gram_matrix(f), expected[None])


def test_gram_matrix_is_float32_under_bf16_autocast():
    f = torch.rand(2, 8, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(f)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, gram_matrix(f))


def test_style_loss_is_sum_of_squared_frobenius_norms():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)     # Gram [[5, 11], [11, 25]] / 4
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)     # Gram [[1, 0], [0, 1]] / 4
    target = {"relu1_2": gram_matrix(b), "relu2_2": torch.zeros(1, 2, 2)}
    feats = {"relu1_2": a, "relu2_2": b}
    expected = ((4 ** 2 + 11 ** 2 + 11 ** 2 + 24 ** 2) / 16) + (1 + 1) / 16
    torch.testing.assert_close(style_loss(target, feats), torch.tensor(expected))


def test_style_loss_averages_over_the_batch():
    target = {"relu1_2": torch.zeros(1, 2, 2)}
    one = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 2, 1, 2)    # ||G||^2 = (1/4)^2
    batch = torch.cat([one, 2 * one])                                 # (1/4)^2 and (4/4)^2
    torch.testing.assert_close(style_loss(target, {"relu1_2": batch}), torch.tensor((1 / 16 + 1) / 2))


def test_feature_pixel_and_tv_losses_by_hand():
    a = torch.tensor([[0.0, 1.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    b = torch.zeros(1, 1, 2, 2)
    torch.testing.assert_close(feature_loss(a, b), torch.tensor((0 + 1 + 1 + 9) / 4))
    torch.testing.assert_close(pixel_loss(a, b), torch.tensor(11 / 4))
    # vertical diffs (1, 2), horizontal diffs (1, 2): means 2.5 + 2.5
    torch.testing.assert_close(tv_loss(a), torch.tensor(5.0))
    assert tv_loss(torch.full((1, 3, 5, 5), 0.3)) == 0


def test_default_weights_scale_between_flavours():
    caffe, tv = LossWeights.defaults("caffe"), LossWeights.defaults("torchvision")
    assert tv.content == pytest.approx(caffe.content * 255 ** 2)
    assert tv.style == pytest.approx(caffe.style * 255 ** 4)
    assert tv.tv == caffe.tv
    assert LossWeights.defaults("caffe", "pixel").content == 0
    with pytest.raises(ValueError, match="flavour"):
        LossWeights.defaults("keras")


def test_grid_loss_sees_a_fixed_pattern_not_misplaced_detail():
    gen = torch.Generator().manual_seed(4)
    target = torch.rand(2, 3, 32, 32, generator=gen)
    pattern = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) * 0.01        # a 2-pixel checkerboard
    fixed = target + pattern.repeat(16, 16)
    noisy = target + 0.01 * torch.randn(2, 3, 32, 32, generator=gen)  # the same power, no pattern
    assert grid_loss(target, target, 2) == 0
    # 3 channels x 4 positions x 0.01**2: all of the fixed pattern's power; a little of the noise's
    torch.testing.assert_close(grid_loss(fixed, target, 2), torch.tensor(12 * 1e-4), rtol=1e-4, atol=0)
    assert grid_loss(noisy, target, 2) < 0.02 * grid_loss(fixed, target, 2)
    assert grid_loss(target + 0.3, target, 2) < 1e-10   # a uniform shift is no pattern
    with pytest.raises(ValueError, match="period"):
        PerceptualLoss(None, LossWeights(pixel=1.0, grid=1.0))
    total, parts = PerceptualLoss(None, LossWeights(pixel=1.0, grid=2.0), grid_period=2)(fixed, target)
    torch.testing.assert_close(parts["grid"], 2.0 * grid_loss(fixed, target, 2))
    # listed only when used: the weights of runs from before the grid loss read the same
    assert LossWeights(pixel=1.0).as_dict() == {"content": 0.0, "style": 0.0, "pixel": 1.0, "tv": 0.0}
    assert LossWeights(**LossWeights(grid=2.0).as_dict()).grid == 2.0


@pytest.fixture(scope="module")
def loss_net():
    return LossNetwork("caffe", WEIGHTS)


def test_perceptual_loss_combines_weighted_terms(loss_net):
    gen = torch.Generator().manual_seed(3)
    style = torch.rand(1, 3, 32, 32, generator=gen)
    content = torch.rand(2, 3, 32, 32, generator=gen)
    output = torch.rand(2, 3, 32, 32, generator=gen, requires_grad=True)
    weights = LossWeights(content=2.0, style=1e-3, pixel=0.5, tv=10.0)
    total, parts = PerceptualLoss(loss_net, weights, style_image=style)(output, content)
    with torch.no_grad():
        fo, fc, fs = loss_net(output), loss_net(content), loss_net(style)
        expected = {"content": 2.0 * feature_loss(fo["relu2_2"], fc["relu2_2"]),
                    "style": 1e-3 * style_loss({k: gram_matrix(v) for k, v in fs.items()}, fo),
                    "pixel": 0.5 * pixel_loss(output, content), "tv": 10.0 * tv_loss(output)}
    assert set(parts) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value, rtol=1e-4, atol=0)
    torch.testing.assert_close(total.detach(), sum(expected.values()), rtol=1e-4, atol=0)
    total.backward()
    assert output.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_net.parameters())


def test_perceptual_loss_skips_zero_terms_and_needs_style_image(loss_net):
    out = torch.rand(1, 3, 16, 16)
    total, parts = PerceptualLoss(None, LossWeights(pixel=1.0))(out, out * 0.5)
    assert set(parts) == {"pixel"} and total > 0
    with pytest.raises(ValueError, match="style image"):
        PerceptualLoss(loss_net, LossWeights(content=1.0, style=1.0))
    with pytest.raises(ValueError, match="loss network"):
        PerceptualLoss(None, LossWeights(content=1.0))
