"""Super-resolution training: the export leaves out its hold-out, the residual net on the benchmark
degradation, feature loss with pixel and grid terms, and sizes that must divide by the scale."""

import json
from pathlib import Path

import pytest
import torch

from backend.model_store import ModelStore
from tiny_training import SHARED, WEIGHTS, parse
from trainer.checkpoint import load_checkpoint
from trainer import train_sr


def test_sr_training_exports_a_model_without_its_holdout(tmp_path):
    args = parse("train", "sr", "--scale", "2", "--loss", "pixel", "--data", SHARED / "data" / "sr" / "Set5",
                 "--size", "32", "--batch", "2", "--channels", "8", "--blocks", "1", "--iterations", "3",
                 "--holdout", "2", "--precision", "fp32", "--run-dir", tmp_path / "run", "--out", tmp_path / "models")
    json_path = train_sr.run(args)
    meta = json.loads(json_path.read_text())
    assert meta["name"] == "sr_x2_pixel" and meta["kind"] == "sr" and meta["scale"] == 2 and meta["vgg"] is None
    assert len(meta["data"]["held_out"]) == 2 and meta["data"]["training_images"] == 3
    store = ModelStore(tmp_path / "models", include_bundled=False, include_user=False)
    net = store.load("sr_x2_pixel")
    assert net(torch.rand(1, 3, 10, 12)).shape == (1, 3, 20, 24)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint_0000003.pt")
    held = set(ckpt["config"]["held_out"])
    assert {Path(p).name for p in held} == set(meta["data"]["held_out"])


def test_residual_sr_on_benchmark_degradation_exports_and_reloads_its_architecture(tmp_path):
    args = parse("train", "sr", "--scale", "2", "--loss", "pixel", "--blur", "0", "--residual",
                 "--data", SHARED / "data" / "sr" / "Set5", "--size", "32", "--batch", "2", "--channels", "8",
                 "--blocks", "1", "--iterations", "2", "--precision", "fp32", "--run-dir", tmp_path / "run",
                 "--out", tmp_path / "models")
    meta = json.loads(train_sr.run(args).read_text())
    assert meta["architecture"]["residual"] is True
    assert meta["recipe"]["degradation"] == "antialiased bicubic"
    net = ModelStore(tmp_path / "models", include_bundled=False, include_user=False).load("sr_x2_pixel")
    assert net.residual
    # With the last conv zeroed the net is exactly a bicubic upscale of its input.
    torch.nn.init.zeros_(net.tail[1].weight)
    torch.nn.init.zeros_(net.tail[1].bias)
    x = torch.rand(1, 3, 10, 12)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(net(x), bicubic, atol=1e-6)


def test_feature_loss_with_pixel_and_grid_terms_trains_on_all_and_records_the_weights(tmp_path):
    args = parse("train", "sr", "--scale", "2", "--loss", "feat", "--pixel-weight", "1e5", "--grid-weight", "1e6",
                 "--upsample", "bilinear", "--data",
                 SHARED / "data" / "sr" / "Set5", "--size", "32", "--batch", "2", "--channels", "8", "--blocks",
                 "1", "--iterations", "2", "--precision", "fp32", "--vgg-weights", WEIGHTS,
                 "--run-dir", tmp_path / "run", "--out", tmp_path / "models")
    meta = json.loads(train_sr.run(args).read_text())
    assert meta["recipe"]["loss_weights"] == {"content": 1.0, "style": 0.0, "pixel": 1e5, "tv": 2.5e4, "grid": 1e6}
    assert set(meta["recipe"]["final_losses"]) == {"total", "content", "pixel", "tv", "grid"}
    assert meta["architecture"]["upsample"] == "bilinear"
    assert all(value > 0 for value in meta["recipe"]["final_losses"].values())
    with pytest.raises(ValueError, match="--content-weight .* needs --loss feat"):
        train_sr.sr_loss_weights(parse("train", "sr", "--scale", "2", "--loss", "pixel", "--data", tmp_path,
                                       "--content-weight", "1"))


def test_sr_size_must_be_divisible_by_scale(tmp_path):
    args = parse("train", "sr", "--scale", "8", "--data", SHARED / "data" / "sr" / "Set5", "--size", "100",
                 "--loss", "pixel", "--run-dir", tmp_path)
    with pytest.raises(ValueError, match="divisible"):
        train_sr.run(args)
