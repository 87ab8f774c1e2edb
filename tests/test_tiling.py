"""Tile layout and blending (tiles cover the image, overlaps cross-fade to exactly one) and the
exact instance-norm statistics of tiled style nets."""

import copy

import numpy as np
import pytest
import torch

from backend import fastnet, tiling
from backend.nets import StyleNet, mirror_pad
from backend.protocol import BrushworkError
from helpers import psnr, random_image


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
    out = tiling.run_tiled(lambda tile: tile.copy(), image, 128, 16, 16, 4)
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_upscaling_through_tiles_matches_the_whole_image():
    image = random_image(90, 70)

    def nearest(tile):
        return tile.repeat(2, axis=0).repeat(2, axis=1)

    out = tiling.run_tiled(nearest, image, 48, 8, 8)
    np.testing.assert_allclose(out, nearest(image), atol=1e-6)


def test_progress_and_cancel():
    image = random_image(200, 200)
    seen = []
    tiling.run_tiled(lambda t: t, image, 96, 8, 8, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, len(seen)) for i in range(1, len(seen) + 1)] and len(seen) > 1
    with pytest.raises(BrushworkError) as err:
        tiling.run_tiled(lambda t: t, image, 96, 8, 8, is_cancelled=lambda: True)
    assert err.value.code == "cancelled"


def test_tile_too_small_for_its_margins_is_refused():
    with pytest.raises(ValueError, match="too small"):
        tiling.spans(1000, 64, 24, 16, 4)


@pytest.fixture(scope="module")
def style_net():
    """A random-init StyleNet prepared as the engine prepares it (StatsNorms, sub-pixel upsampling), fp32."""
    torch.manual_seed(3)
    net = StyleNet()
    for module in net.modules():   # non-trivial norm parameters, so that wrong statistics show
        if isinstance(module, torch.nn.InstanceNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return fastnet.with_subpixel_upsampling(tiling.with_stats_norms(net)).eval().to(memory_format=torch.channels_last)


def _whole(net, image):
    with torch.inference_mode():
        return tiling.to_image(net(tiling.to_input(image, "cpu", torch.float32)))


def test_tiles_use_the_whole_images_exact_statistics(style_net):
    image = random_image(192, 240, seed=5)
    norms = [m for m in style_net.modules() if isinstance(m, tiling.StatsNorm)]
    whole, used = {}, {}

    def record_input(norm, args):
        x = args[0].double()
        whole[norm] = (x.mean((0, 2, 3)), x.var((0, 2, 3), correction=0))

    def record_frozen(norm, args):
        if norm.frozen is not None:
            used[norm] = norm.frozen

    hooks = [norm.register_forward_pre_hook(record_input) for norm in norms]
    _whole(style_net, image)
    for hook in hooks:
        hook.remove()
    hooks = [norm.register_forward_pre_hook(record_frozen) for norm in norms]
    try:
        tiling.stylize_tiled(style_net, image, 96, 16, 16)
    finally:
        for hook in hooks:
            hook.remove()
    # the encoder's first two and the decoder's two norms run in tiles; the rest see whole tensors
    assert [norms.index(norm) for norm in used] == [0, 1, len(norms) - 2, len(norms) - 1]
    for norm, (mean, var) in used.items():
        np.testing.assert_allclose(mean.numpy(), whole[norm][0].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(var.numpy(), whole[norm][1].numpy(), rtol=1e-4)
    assert all(norm.frozen is None for norm in norms)   # nothing stays frozen afterwards


def test_tiled_style_net_reproduces_the_untiled_one(style_net):
    image = random_image(192, 240, seed=6)
    steps = []
    tiled = tiling.stylize_tiled(style_net, image, 96, 16, 16, progress=lambda done, total: steps.append((done, total)))
    assert len(steps) > 20 and steps == [(i, steps[-1][1]) for i in range(1, len(steps) + 1)]
    assert psnr(tiled, _whole(style_net, image)) >= 80


def test_tiles_of_a_net_with_a_mirrored_border_reproduce_its_forward(style_net):
    bordered = copy.deepcopy(style_net)
    bordered.border = 16
    image = random_image(192, 240, seed=7)
    mirrored = tiling.to_image(mirror_pad(tiling.to_input(image, "cpu", torch.float32), 16))
    tiled = tiling.stylize_tiled(bordered, mirrored, 96, 16, 16)[16:-16, 16:-16]   # what net.transform computes
    whole = _whole(bordered, image)
    assert tiled.shape == whole.shape == image.shape
    assert psnr(tiled, whole) >= 80
    assert psnr(whole, _whole(style_net, image)) < 40        # the border does change the result


def test_statistics_leave_a_mirrored_margin_out_whole_and_in_tiles(style_net):
    net = tiling.keep_statistics_inside(copy.deepcopy(style_net), 16)
    norms = [m for m in net.modules() if isinstance(m, tiling.StatsNorm)]
    assert [norm.margin for norm in norms] == [16, 8] + [4] * (1 + 2 * len(net.residuals)) + [8, 16]
    image = mirror_pad(tiling.to_input(random_image(128, 160, seed=9), "cpu", torch.float32), 16)
    image = tiling.to_image(image)
    checked = []

    def check(norm, args, output):   # instance norm with the statistics of the part inside the margin
        x, m = args[0].double(), norm.margin
        inside = x[..., m:x.shape[-2] - m, m:x.shape[-1] - m]
        mean, var = inside.mean((0, 2, 3)), inside.var((0, 2, 3), correction=0)
        expected = torch.nn.functional.batch_norm(x, mean, var, norm.weight.double(), norm.bias.double(),
                                                  eps=norm.eps)
        checked.append(float((output.double() - expected).abs().max()))

    hooks = [norm.register_forward_hook(check) for norm in norms]
    whole = _whole(net, image)
    for hook in hooks:
        hook.remove()
    assert len(checked) == len(norms) and max(checked) < 1e-3
    assert psnr(tiling.stylize_tiled(net, image, 96, 16, 16), whole) >= 80
    assert psnr(whole, _whole(style_net, image)) < 40        # leaving the margin out does change the result


def test_tiled_style_net_stops_when_cancelled_and_unfreezes(style_net):
    polls = []
    with pytest.raises(BrushworkError) as err:
        tiling.stylize_tiled(style_net, random_image(192, 240), 96, 16, 16,
                             is_cancelled=lambda: polls.append(1) or len(polls) > 5)
    assert err.value.code == "cancelled" and len(polls) == 6
    assert all(m.frozen is None for m in style_net.modules() if isinstance(m, tiling.StatsNorm))


def test_tiled_style_net_refuses_unaligned_images(style_net):
    with pytest.raises(ValueError, match="multiples of 4"):
        tiling.stylize_tiled(style_net, random_image(190, 240), 96, 16, 16)
