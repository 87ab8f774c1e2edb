"""The image transformation networks: output shapes, sizes, and state-dict round trips."""

import pytest
import torch

from backend.nets import SRNet, StyleNet, build_net, default_architecture, mirror_pad, style_reach


def parameter_count(net):
    return sum(p.numel() for p in net.parameters())


def test_style_net_keeps_size_and_range():
    net = StyleNet().eval()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 64, 48))
    assert y.shape == (2, 3, 64, 48)
    assert 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("blocks", [1, 5, 8])
def test_style_reach_is_how_far_one_input_pixel_moves_the_output(blocks):
    # Without instance norm (whose statistics are image-wide), changing one input column
    # changes output columns up to style_reach(blocks) away, for some column phase, and no further.
    torch.manual_seed(0)
    net = StyleNet(blocks=blocks).double().eval()
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.InstanceNorm2d):
                setattr(module, name, torch.nn.Identity())
    x = torch.rand(1, 3, 8, 240, dtype=torch.double)
    farthest = 0
    with torch.no_grad():
        y = net(x)
        for column in range(116, 120):
            nudged = x.clone()
            nudged[..., column] += 1
            changed = ((net(nudged) - y).abs().amax((0, 1, 2)) > 0).nonzero().flatten()
            farthest = max(farthest, column - int(changed.min()), int(changed.max()) - column)
    assert farthest == style_reach(blocks)


def test_style_net_has_the_papers_size():
    # Johnson et al. report about 1.68M parameters for this network.
    assert parameter_count(StyleNet(channels=32, blocks=5)) == pytest.approx(1.68e6, rel=0.01)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_sr_net_upscales_by_its_scale(scale):
    net = SRNet(scale=scale).eval()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 20, 12))
    assert y.shape == (1, 3, 20 * scale, 12 * scale)
    assert 0 <= y.min() and y.max() <= 1


def test_sr_net_grows_by_one_upsampling_stage_per_doubling():
    # Each x2 stage is a 64->64 3x3 conv plus batch norm: 36,864 + 64 + 128 parameters.
    assert parameter_count(SRNet(scale=8)) - parameter_count(SRNet(scale=4)) == 64 * 64 * 9 + 64 + 128


@pytest.mark.parametrize("scale", [0, 3, 6])
def test_sr_net_rejects_scales_that_are_not_powers_of_two(scale):
    with pytest.raises(ValueError, match="power of two"):
        SRNet(scale=scale)


@pytest.mark.parametrize("kind,scale", [("style", 1), ("sr", 2), ("sr", 4)])
def test_state_dict_round_trip_gives_the_same_function(kind, scale):
    torch.manual_seed(0)
    original = build_net(default_architecture(kind, scale)).eval()
    torch.manual_seed(1)
    copy = build_net(default_architecture(kind, scale)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(original(x), copy(x))
        copy.load_state_dict(original.state_dict())
        assert torch.equal(original(x), copy(x))


def test_build_net_rejects_unknown_types():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_net({"type": "gan"})


@pytest.mark.parametrize("arch", [{"type": "style", "channels": 16, "blocks": 3},
                                  {"type": "style", "channels": 8, "blocks": 2, "border": 24},
                                  {"type": "style", "channels": 8, "blocks": 2, "widths": [8, 16, 32, 16, 4]},
                                  {"type": "sr", "scale": 2, "channels": 8, "blocks": 1, "residual": True}])
def test_a_net_says_the_architecture_it_was_built_from(arch):
    assert build_net(arch).architecture() == arch


def test_style_net_stages_are_its_layers_in_order_at_the_resolutions_they_name():
    torch.manual_seed(4)
    net = StyleNet(channels=8, blocks=2, border=8).eval()
    stages = net.stages()
    assert [stage.name for stage in stages] == ["to_half", "to_quarter", "middle", "up_to_half", "to_output"]
    assert [type(stage.layers[0]).__name__ for stage in stages] == ["ConvLayer", "InstanceNorm2d", "InstanceNorm2d",
                                                                    "UpsampleConv", "InstanceNorm2d"]
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        y = mirror_pad(x, 8)
        for stage in stages:
            assert y.shape[-2:] == (64 // stage.reduction_in, 56 // stage.reduction_in)
            for layer in stage.layers:
                y = layer(y)
            assert y.shape[-2:] == (64 // stage.reduction_out, 56 // stage.reduction_out)
        torch.testing.assert_close(y[..., 8:-8, 8:-8], net(x), atol=0, rtol=0)


def test_mirror_pad_mirrors_each_side_by_its_own_amount_and_repeats_what_is_too_small():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = mirror_pad(x, (1, 2, 0, 1))   # left, right, top, bottom
    assert padded.shape == (1, 1, 4, 7)
    assert padded[0, 0, 0].tolist() == [1, 0, 1, 2, 3, 2, 1]
    assert padded[0, 0, 3].tolist() == padded[0, 0, 1].tolist()
    assert mirror_pad(x, 3)[0, 0, 0].tolist() == [0.0] * 4 + [1, 2] + [3.0] * 4   # 3 rows: repeated, not mirrored


def test_build_net_honours_width_and_depth():
    net = build_net({"type": "style", "channels": 16, "blocks": 3})
    assert len(net.residuals) == 3
    assert net.encoder[0][1].out_channels == 16


def test_a_narrow_style_net_has_the_widths_it_names_and_keeps_size_and_range():
    net = build_net({"type": "style", "channels": 8, "blocks": 2, "widths": [8, 16, 24, 12, 4]})
    convs = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [8, 16, 24] + [24] * 4 + [12, 4, 3]
    y = net(torch.rand(1, 3, 36, 28))
    assert y.shape == (1, 3, 36, 28) and 0 <= float(y.min()) and float(y.max()) <= 1
    with pytest.raises(ValueError, match="5 channel counts"):
        build_net({"type": "style", "widths": [8, 16, 24]})


@pytest.mark.parametrize("kind,scale", [("style", 1), ("sr", 4)])
def test_subpixel_rewrite_computes_the_same_function(kind, scale):
    import copy

    from backend.fastnet import SubpixelUpsampleConv, with_subpixel_upsampling
    torch.manual_seed(2)
    net = build_net(default_architecture(kind, scale)).eval()
    fast = with_subpixel_upsampling(copy.deepcopy(net))
    assert any(isinstance(m, SubpixelUpsampleConv) for m in fast.modules())
    x = torch.rand(1, 3, 36, 28)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("strip_bytes,whole_bytes", [(1, 0), (1 << 25, 0), (1, 1 << 27)])
@pytest.mark.parametrize("kind,scale", [("style", 1), ("sr", 2)])
def test_strip_convolutions_compute_the_same_function(kind, scale, strip_bytes, whole_bytes, monkeypatch):
    """One row per strip, the whole input in one strip, and the input padded whole (small inputs)."""
    import copy

    from backend import fastnet
    monkeypatch.setattr(fastnet, "_STRIP_BYTES", strip_bytes)
    monkeypatch.setattr(fastnet, "_WHOLE_BYTES", whole_bytes)
    torch.manual_seed(5)
    net = build_net({**default_architecture(kind, scale), "channels": 8, "blocks": 2}).eval()
    strips = fastnet.with_strip_convolutions(copy.deepcopy(net))
    assert any(isinstance(m, fastnet.StripConv) for m in strips.modules())
    x = torch.rand(1, 3, 37, 29)   # odd sides: the stride-2 convolutions' last rows are strips of their own
    with torch.no_grad():
        torch.testing.assert_close(strips(x), net(x), atol=1e-5, rtol=0)


def test_bilinear_sr_net_round_trips_its_architecture_and_keeps_its_stages_in_the_fast_rewrite():
    import copy

    from backend.fastnet import with_subpixel_upsampling
    arch = {"type": "sr", "scale": 4, "channels": 8, "blocks": 1, "upsample": "bilinear"}
    torch.manual_seed(3)
    net = build_net(arch).eval()
    assert net.architecture() == arch
    assert build_net({**arch, "upsample": "nearest"}).architecture() == {k: v for k, v in arch.items()
                                                                         if k != "upsample"}
    x = torch.rand(1, 3, 14, 10)
    with torch.no_grad():
        nearest = build_net({**arch, "upsample": "nearest"}).eval()
        nearest.load_state_dict(net.state_dict())
        assert not torch.allclose(net(x), nearest(x), atol=1e-3)   # the mode changes the function
        torch.testing.assert_close(with_subpixel_upsampling(copy.deepcopy(net))(x), net(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="upsample must be one of"):
        build_net({**arch, "upsample": "bicubic"})


def test_a_new_residual_sr_net_is_exactly_bicubic_and_its_tail_still_learns():
    """Zero-initialised tail: the net starts as bicubic (no noise for Adam to fight, which once
    killed a whole x4 net's detail branch), yet the tail's gradient is not zero."""
    torch.manual_seed(0)
    net = build_net({"type": "sr", "scale": 4, "channels": 8, "blocks": 1, "residual": True}).train()
    x = torch.rand(2, 3, 12, 10)
    out = net(x)
    assert torch.equal(out, torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False))
    (out - torch.rand_like(out)).square().mean().backward()
    assert net.tail[1].weight.grad.abs().sum() > 0
    # the paper's (non-residual) net keeps PyTorch's default initialisation
    plain = build_net({"type": "sr", "scale": 4, "channels": 8, "blocks": 1})
    assert plain.tail[1].weight.abs().sum() > 0
