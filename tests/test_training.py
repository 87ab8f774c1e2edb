"""Training: data, SR degradation, style/SR runs, checkpoints and resume, export, DDP, jobs."""

import hashlib
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.model_store import ModelStore
from backend.nets import style_reach
from backend.protocol import BrushworkError
from helpers import shared_dir
from trainer.checkpoint import latest_checkpoint, load_checkpoint
from trainer.cli import build_parser
from trainer.data import CropSampler, degrade, find_images, gaussian_blur, split_holdout
from trainer.init_weights import copy_and_deepen, deeper_by
from trainer import train_sr, train_style

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_dir()
STYLE = SHARED / "data" / "styles" / "udnie.jpg"
CONTENT = SHARED / "data" / "content"
WEIGHTS = SHARED / "weights" / "vgg16_caffe_relu4_3.pth"
TINY = ["--size", "48", "--style-size", "64", "--batch", "2", "--channels", "8", "--blocks", "1",
        "--precision", "fp32", "--vgg-weights", str(WEIGHTS)]


def parse(*argv):
    return build_parser().parse_args([str(a) for a in argv])


def train_style_run(tmp, *extra):
    args = parse("train", "style", "--style", STYLE, "--content", CONTENT, *TINY, "--out", tmp / "models", *extra)
    return train_style.run(args)


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


# ---- style training -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    """An uninterrupted 12-iteration run with checkpoints at 6 and 12."""
    tmp = tmp_path_factory.mktemp("style")
    json_path = train_style_run(tmp, "--iterations", "12", "--checkpoint-every", "6", "--run-dir", tmp / "run",
                                "--name", "tiny_udnie", "--display-name", "Tiny Udnie")
    return tmp, json_path


def test_style_objective_falls(style_run):
    tmp, _ = style_run
    history = load_checkpoint(tmp / "run" / "checkpoint_0000012.pt")["history"]
    total = history["total"]
    assert len(total) == 12 and history["iteration"][-1] == 12
    assert np.mean(total[-3:]) < 0.8 * np.mean(total[:3])
    assert (tmp / "run" / "preview.png").is_file() and (tmp / "run" / "loss.png").is_file()
    assert Image.open(tmp / "run" / "preview.png").size[0] > 3 * 48


def resume_from_iteration_6(style_run, tmp_path, *extra):
    """Continue the fixture's run from its checkpoint at 6 to 12 in a new run dir; return
    (the resumed final checkpoint, the uninterrupted run's)."""
    tmp, _ = style_run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint_0000006.pt").write_bytes((tmp / "run" / "checkpoint_0000006.pt").read_bytes())
    train_style_run(tmp_path, "--iterations", "12", "--checkpoint-every", "6", "--run-dir", run_dir,
                    "--name", "tiny_udnie", "--resume", *extra)
    return load_checkpoint(latest_checkpoint(run_dir)), load_checkpoint(tmp / "run" / "checkpoint_0000012.pt")


def test_resume_is_bit_identical(style_run, tmp_path):
    resumed, straight = resume_from_iteration_6(style_run, tmp_path)
    assert resumed["iteration"] == 12
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert resumed["history"] == straight["history"]
    assert len(resumed["commands"]) == 2 and '"resume": "latest"' in resumed["commands"][1]


def test_batches_made_ahead_in_threads_train_the_same_net(style_run, tmp_path):
    threaded, straight = resume_from_iteration_6(style_run, tmp_path, "--loader-threads", "3")
    assert all(torch.equal(threaded["model"][k], v) for k, v in straight["model"].items())
    with pytest.raises(ValueError, match="--loader-threads"):
        train_style_run(tmp_path, "--iterations", "1", "--run-dir", tmp_path / "run2", "--loader-threads", "-1")


@pytest.mark.slow
def test_compiled_net_trains_and_exports_plain_weights(tmp_path):
    json_path = train_style_run(tmp_path, "--iterations", "2", "--run-dir", tmp_path / "run", "--compile")
    net = ModelStore(tmp_path / "models", include_bundled=False, include_user=False).load(json_path.stem)
    assert not any(key.startswith("_orig_mod") for key in net.state_dict())
    assert all(v > 0 for v in json.loads(json_path.read_text())["recipe"]["final_losses"].values())


def test_resume_refuses_changed_options(style_run, tmp_path):
    tmp, _ = style_run
    with pytest.raises(ValueError, match="seed"):
        train_style_run(tmp_path, "--iterations", "30", "--run-dir", tmp / "run", "--seed", "1", "--resume",
                        str(tmp / "run" / "checkpoint_0000012.pt"))


def test_exported_style_model_loads_with_metadata(style_run):
    tmp, json_path = style_run
    assert json_path == tmp / "models" / "tiny_udnie.json"
    store = ModelStore(tmp / "models", include_bundled=False, include_user=False)
    info = store.get("tiny_udnie")
    assert info.kind == "style" and info.display_name == "Tiny Udnie" and info.thumbnail_path is not None
    recipe, data = info.metadata["recipe"], info.metadata["data"]
    assert recipe["iterations"] == 12 and recipe["batch"] == 2 and recipe["size"] == 48
    assert recipe["style_size"] == 64 and recipe["vgg"] == "caffe" and recipe["loss_weights"]["style"] > 0
    assert "udnie.jpg" in recipe["command"] and recipe["hardware"] and recipe["wall_time_s"] > 0
    assert data["style_sha256"] == hashlib.sha256(STYLE.read_bytes()).hexdigest()
    assert data["content_images"] == 3 and info.metadata["vgg"] == "caffe"
    net = store.load("tiny_udnie")
    state = load_checkpoint(tmp / "run" / "checkpoint_0000012.pt")["model"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key].contiguous()), key


def test_fp16_on_cpu_and_bad_content_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        train_style_run(tmp_path, "--iterations", "1", "--precision", "fp16", "--run-dir", tmp_path / "r")
    args = parse("train", "style", "--style", STYLE, "--content", tmp_path / "missing", *TINY)
    with pytest.raises(FileNotFoundError, match="missing"):
        train_style.run(args)


# ---- SR training --------------------------------------------------------------------------

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


def test_init_fine_tunes_an_existing_model_and_the_recipe_names_it(style_run, tmp_path):
    tmp, parent_json = style_run
    parent = json.loads(parent_json.read_text())
    json_path = train_style_run(tmp_path, "--iterations", "2", "--run-dir", tmp_path / "run", "--name", "tuned",
                                "--lr", "1e-5", "--init", parent_json)
    meta = json.loads(json_path.read_text())
    init = meta["recipe"]["init"]
    assert init["model"] == "tiny_udnie" and init["sha256"] == parent["sha256"]
    assert init["recipe"]["command"] == parent["recipe"]["command"] and init["recipe"]["iterations"] == 12
    # two tiny steps away from the parent, far closer to it than to a fresh net
    store = ModelStore([tmp / "models", tmp_path / "models"], include_bundled=False, include_user=False)
    start, tuned = store.load("tiny_udnie").state_dict(), store.load("tuned").state_dict()
    fresh = train_style.build_net(meta["architecture"]).state_dict()
    key = "encoder.0.1.weight"
    assert 0 < (tuned[key] - start[key]).abs().max() < 1e-3 < (fresh[key] - start[key]).abs().max()
    with pytest.raises(ValueError, match="architecture"):
        train_style_run(tmp_path, "--iterations", "1", "--run-dir", tmp_path / "run2", "--channels", "4",
                        "--init", parent_json)
    with pytest.raises(BrushworkError, match="no model named"):
        train_style_run(tmp_path, "--iterations", "1", "--run-dir", tmp_path / "run3", "--init", "no_such_model")


def test_init_with_more_blocks_starts_from_the_same_function_and_may_add_a_border(style_run, tmp_path):
    tmp, parent_json = style_run
    parent = json.loads(parent_json.read_text())["architecture"]
    deeper = {**parent, "blocks": parent["blocks"] + 2}
    assert deeper_by(parent, deeper) == 2 and deeper_by(parent, parent) == 0
    assert deeper_by(deeper, parent) is None and deeper_by(parent, {**deeper, "channels": 16}) is None
    source = ModelStore(tmp / "models", include_bundled=False, include_user=False).load("tiny_udnie")
    net = train_style.build_net(deeper)
    copy_and_deepen(net, source)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(image), source(image), atol=1e-6)
    reach = style_reach(deeper["blocks"])
    with pytest.warns(UserWarning, match=f"less than the reach of a {deeper['blocks']}-block net [(]{reach} px"):
        json_path = train_style_run(tmp_path, "--iterations", "2", "--run-dir", tmp_path / "run", "--name", "deeper",
                                    "--blocks", str(deeper["blocks"]), "--init", parent_json, "--border", "8")
    meta = json.loads(json_path.read_text())
    assert meta["architecture"] == {**deeper, "border": 8} and meta["recipe"]["init"]["model"] == "tiny_udnie"
    trained = ModelStore(tmp_path / "models", include_bundled=False, include_user=False).load("deeper")
    assert trained.border == 8 and trained(image).shape == image.shape
    with pytest.raises(ValueError, match="border must be a multiple of 4"):
        train_style_run(tmp_path, "--iterations", "1", "--run-dir", tmp_path / "run2", "--border", "6")


def test_learning_rate_warms_up_then_decays_to_the_final_rate():
    from trainer.loop import learning_rate
    assert [learning_rate(i, 1e-3, 100) for i in (0, 50, 99)] == [1e-3] * 3  # the paper's constant rate
    assert learning_rate(0, 1e-3, 100, warmup=10) == pytest.approx(1e-4)
    assert learning_rate(9, 1e-3, 100, warmup=10) == learning_rate(50, 1e-3, 100, warmup=10) == pytest.approx(1e-3)
    decay = [learning_rate(i, 1e-3, 100, warmup=10, final=1e-5) for i in range(10, 100)]
    assert decay[0] == pytest.approx(1e-3) and decay[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_schedule_reaches_the_optimizer_and_the_recipe(tmp_path):
    json_path = train_style_run(tmp_path, "--iterations", "4", "--warmup", "1", "--lr-final", "1e-5",
                                "--run-dir", tmp_path / "run")
    assert json.loads(json_path.read_text())["recipe"]["lr_schedule"] == {"warmup": 1, "final": 1e-5, "iterations": 4}
    optimizer = load_checkpoint(tmp_path / "run" / "checkpoint_0000004.pt")["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="lr_schedule"):  # a resumed run may not stretch the decay
        train_style_run(tmp_path, "--iterations", "8", "--warmup", "1", "--lr-final", "1e-5",
                        "--run-dir", tmp_path / "run", "--resume")


def test_blur_0_is_the_benchmarks_antialiased_bicubic():
    hr = torch.rand(1, 3, 64, 64)
    low = degrade(hr, 4, sigma=0)
    pil = Image.fromarray((hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((16, 16),
                                                                                                 Image.BICUBIC)
    pil = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)
    assert (low[0] - pil).abs().mean() < 0.01  # Pillow's antialiased bicubic, up to 8-bit rounding
    assert (degrade(hr, 4) - pil).abs().mean() > 0.02  # the paper's blur + plain bicubic is another degradation


def test_time_limit_stops_early_and_the_recipe_says_so(tmp_path):
    json_path = train_style_run(tmp_path, "--iterations", "50", "--time-limit", "0.001", "--run-dir", tmp_path / "run")
    recipe = json.loads(json_path.read_text())["recipe"]
    assert recipe["iterations"] == 1 and recipe["stopped_by_time_limit"] is True
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_0000001.pt"


def train_command(tmp_path, capsys, *extra):
    """``brushwork train style`` as the CLI runs it: (exit status, stdout, stderr)."""
    args = parse("train", "style", "--style", STYLE, "--content", CONTENT, *TINY, "--out", tmp_path / "models",
                 "--run-dir", tmp_path / "run", *extra)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_measures_this_device_and_suggests_a_time_limit(tmp_path, capsys):
    code, out, err = train_command(tmp_path, capsys, "--iterations", "1000000", "--estimate")
    assert code == 0 and out == ""
    line = next(line for line in err.splitlines() if line.startswith("measured on"))
    s_per_iteration = float(line.split(": ")[1].split(" s per iteration")[0])
    assert s_per_iteration > 0 and "1,000,000 iterations take about" in line
    assert "--time-limit 3600: about" in line   # the way to a model in an hour
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()   # nothing written


def test_the_end_says_where_the_model_went_how_long_it_trained_and_how_to_use_it(tmp_path, capsys):
    code, out, err = train_command(tmp_path, capsys, "--iterations", "3", "--name", "told")
    assert code == 0
    json_path = tmp_path / "models" / "told.json"
    lines = out.splitlines()
    assert lines[0] == f"saved the style model 'told' to {json_path}"
    assert lines[1].startswith("trained 3 iterations in ") and "PARTLY" not in out
    assert lines[2] == f"use it: brushwork stylize photo.jpg --style told --models {tmp_path / 'models'} -o out.png"
    assert "training told: 3 iterations on " in err   # said before the first step


def test_a_time_limited_run_is_marked_partly_trained(tmp_path, capsys):
    code, out, _ = train_command(tmp_path, capsys, "--iterations", "50", "--time-limit", "0.001", "--name", "short")
    assert code == 0 and "stopped by --time-limit at 1 of 50 iterations: the model is partly trained" in out
    summary = ModelStore(tmp_path / "models", include_bundled=False, include_user=False).get("short").summary()
    assert summary["partly_trained"] is True and summary["iterations"] == 1 and summary["planned_iterations"] == 50


def test_augmentation_is_recorded_and_a_resume_must_keep_it(tmp_path):
    json_path = train_style_run(tmp_path, "--iterations", "2", "--checkpoint-every", "1", "--zoom", "1.5", "--flip",
                                "--run-dir", tmp_path / "run")
    recipe = json.loads(json_path.read_text())["recipe"]
    assert recipe["zoom"] == 1.5 and recipe["flip"] is True
    assert "zoom" not in json.loads(train_style_run(tmp_path, "--iterations", "1",
                                                    "--run-dir", tmp_path / "plain").read_text())["recipe"]
    with pytest.raises(ValueError, match="zoom"):
        train_style_run(tmp_path, "--iterations", "3", "--flip", "--run-dir", tmp_path / "run", "--resume")


def test_style_holdout_keeps_images_out_of_training(tmp_path):
    listing = tmp_path / "held.txt"
    listing.write_text("# held out\nchicago.jpg\n")
    json_path = train_style_run(tmp_path, "--iterations", "1", "--holdout-list", listing, "--run-dir", tmp_path / "run")
    data = json.loads(json_path.read_text())["data"]
    assert data["held_out"] == ["chicago.jpg"] and data["content_images"] == 2


def test_sampler_cache_does_not_change_samples():
    paths = find_images(CONTENT)
    cached, uncached = CropSampler(paths, 64, seed=3), CropSampler(paths, 64, seed=3, cache_bytes=0)
    for number in (0, 1, 2, 3, 7):
        assert torch.equal(cached.sample(number), uncached.sample(number))
    assert len(cached._cache) == 3 and not uncached._cache


def test_sr_size_must_be_divisible_by_scale(tmp_path):
    args = parse("train", "sr", "--scale", "8", "--data", SHARED / "data" / "sr" / "Set5", "--size", "100",
                 "--loss", "pixel", "--run-dir", tmp_path)
    with pytest.raises(ValueError, match="divisible"):
        train_sr.run(args)


# ---- DDP ----------------------------------------------------------------------------------

DDP_WORKER = """
import sys, torch
sys.path.insert(0, {repo!r})
from trainer.cli import build_parser
from trainer.loop import run_training
from trainer.train_style import StyleTask
tasks = []
def make_task(args, device):
    tasks.append(StyleTask(args, device))
    return tasks[0]
args = build_parser().parse_args(sys.argv[1:])
run_training(args, make_task)
torch.save(tasks[0].net.state_dict(), args.run_dir / ("rank" + __import__("os").environ["RANK"] + ".pt"))
"""


@pytest.mark.slow
def test_torchrun_two_ranks_end_identical(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER.format(repo=str(REPO)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))

    def torchrun(iterations, *extra):
        argv = ["train", "style", "--style", STYLE, "--content", CONTENT, *TINY, "--iterations", iterations,
                "--checkpoint-every", "2", "--run-dir", tmp_path / "run", "--out", tmp_path / "models", *extra]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               worker, *argv]
        result = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]

    torchrun(4)
    rank0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
    assert load_checkpoint(tmp_path / "run" / "checkpoint_0000004.pt")["config"]["world_size"] == 2
    meta = json.loads((tmp_path / "models" / "udnie.json").read_text())
    assert meta["recipe"]["world_size"] == 2 and meta["recipe"]["batch"] == 4
    torchrun(6, "--resume")   # resume under DDP continues from the last checkpoint
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["iteration"] == 6
    assert not torch.equal(torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)["encoder.0.1.weight"],
                           rank0["encoder.0.1.weight"])


# ---- a real daemon serves a freshly trained model ------------------------------------------

@pytest.mark.slow
def test_daemon_serves_a_model_trained_while_it_runs(tmp_path):
    from backend.client import Client
    from daemon_process import start_daemon, stop_daemon
    models = tmp_path / "models"
    models.mkdir()
    endpoint = f"ipc://{tmp_path}/daemon.sock"
    daemon = start_daemon(tmp_path, endpoint, models)
    try:
        train_style_run(tmp_path, "--iterations", "2", "--run-dir", tmp_path / "run", "--name", "fresh")
        width, height = 40, 32
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 4), dtype=np.uint8)
        fmt = {"dtype": "u8", "channels": "RGBA", "transfer": "srgb"}
        with Client(endpoint, timeout=120) as client:
            deadline = time.monotonic() + 30   # the daemon's watcher re-scans its folders in the background
            while "fresh" not in [m["name"] for m in client.info()["models"]]:
                assert time.monotonic() < deadline, "the daemon never listed the freshly trained model"
                time.sleep(0.25)
            result = client.stylize(pixels.tobytes(), width, height, fmt, "fresh")
        out = np.frombuffer(bytes(result.pixels), np.uint8).reshape(height, width, 4)
        assert (result.width, result.height) == (width, height)
        assert np.abs(out[..., :3].astype(int) - pixels[..., :3]).mean() > 1
    finally:
        stop_daemon(daemon)
