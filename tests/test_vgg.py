"""The VGG-16 loss network: preprocessing per flavour, layer layout, freezing."""

import pytest
import torch
from torchvision.models import vgg16

from helpers import shared_dir
from trainer.vgg import LAYERS, LossNetwork

WEIGHTS = shared_dir() / "weights" / "vgg16_caffe_relu4_3.pth"


@pytest.fixture(scope="module")
def caffe():
    return LossNetwork("caffe", WEIGHTS)


def solid(r, g, b, size=8):
    return torch.tensor([r, g, b], dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


def test_caffe_input_is_bgr_0_255_minus_mean(caffe):
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    by_hand = torch.stack([x[:, 2] * 255 - 103.939, x[:, 1] * 255 - 116.779, x[:, 0] * 255 - 123.68], dim=1)
    torch.testing.assert_close(caffe.preprocess(x), by_hand, rtol=0, atol=1e-4)


def test_pure_red_lights_up_caffe_channel_2(caffe):
    x = caffe.preprocess(solid(1.0, 0.0, 0.0))
    assert torch.allclose(x[0, 2], torch.tensor(255 - 123.68))   # R is the last channel in BGR
    assert torch.allclose(x[0, 0], torch.tensor(-103.939))
    assert torch.allclose(x[0, 1], torch.tensor(-116.779))


def test_torchvision_input_is_rgb_standardised():
    # The caffe file stands in for torchvision's weights: only the preprocessing is under test.
    net = LossNetwork("torchvision", WEIGHTS)
    x = net.preprocess(solid(1.0, 0.0, 0.0))
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


def test_features_match_torchvision_layout(caffe):
    reference = vgg16().features[:23]
    reference.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    reference.eval()
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2))
    feats = caffe(x)
    with torch.no_grad():
        expected = reference(x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1))
    assert list(feats) == list(LAYERS)
    assert [tuple(f.shape) for f in feats.values()] == [(1, 64, 40, 48), (1, 128, 20, 24), (1, 256, 10, 12),
                                                         (1, 512, 5, 6)]
    torch.testing.assert_close(feats["relu4_3"], expected, rtol=1e-4, atol=1e-3)


def test_returns_only_requested_layers_and_stops_early(caffe):
    calls = []
    hook = caffe.features[9].register_forward_hook(lambda *a: calls.append(1))  # pool after relu2_2
    try:
        feats = caffe(torch.rand(1, 3, 16, 16), ["relu2_2", "relu1_2"])
    finally:
        hook.remove()
    assert set(feats) == {"relu1_2", "relu2_2"}
    assert calls == []


def test_loss_network_is_frozen(caffe):
    assert not any(p.requires_grad for p in caffe.parameters())
    caffe.train()
    assert not any(m.training for m in caffe.modules())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    caffe(x)["relu4_3"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in caffe.parameters())


def test_bad_flavour_layer_and_missing_weights_are_clear(tmp_path, caffe):
    with pytest.raises(ValueError, match="flavour"):
        LossNetwork("keras", WEIGHTS)
    with pytest.raises(FileNotFoundError, match="--vgg-weights"):
        LossNetwork("caffe", tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="relu5_3"):
        caffe(torch.rand(1, 3, 8, 8), ["relu5_3"])
    with pytest.raises(ValueError, match="RGB batch"):
        caffe(torch.rand(3, 8, 8))
