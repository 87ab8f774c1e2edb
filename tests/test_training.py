"""Style training: the objective falls, checkpoints resume bit-identically, the export loads with its
metadata, fine-tuning (--init), the learning-rate schedule, time limits, augmentation and hold-out.
Data: test_training_data.py; SR: test_training_sr.py; the CLI's messages, DDP and a daemon serving a
fresh model: test_training_end_to_end.py."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from backend.model_store import ModelStore
from backend.nets import style_reach
from backend.protocol import BrushworkError
from tiny_training import STYLE, TINY, parse, train_style_run
from trainer.checkpoint import latest_checkpoint, load_checkpoint
from trainer.init_weights import copy_and_deepen, deeper_by, load_init_weights, wider
from trainer import train_style


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


def test_init_with_more_channels_and_blocks_starts_from_the_same_function(style_run):
    tmp, parent_json = style_run
    parent = json.loads(parent_json.read_text())["architecture"]    # 8 channels: widths 8 16 32 16 8
    wide = {**parent, "blocks": parent["blocks"] + 1, "widths": [8, 16, 40, 24, 12]}
    assert wider(parent, wide) and not wider(wide, parent) and not wider(parent, parent)
    assert not wider(parent, {**wide, "widths": [8, 16, 40, 24, 4]})    # one layer narrower
    net = train_style.build_net(wide)
    record = load_init_weights(str(parent_json), net, wide)
    assert record["model"] == "tiny_udnie"
    source = ModelStore(tmp / "models", include_bundled=False, include_user=False).load("tiny_udnie")
    image = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.allclose(net.eval()(image), source(image), atol=1e-5)
    # The decoder's first stage has 24 channels, copies of the source's 16: the next layer reads
    # a channel and its copy with different weights, so they learn apart.
    weight = net.decoder[3][1][1].weight
    assert not torch.allclose(weight[:, 0], weight[:, 16])
    assert torch.allclose(weight[:8, 0] + weight[:8, 16], source.decoder[3][1][1].weight[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="fewer channels"):
        load_init_weights(str(parent_json), train_style.build_net({**parent, "channels": 4}), {**parent, "channels": 4})


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


def test_time_limit_stops_early_and_the_recipe_says_so(tmp_path):
    json_path = train_style_run(tmp_path, "--iterations", "50", "--time-limit", "0.001", "--run-dir", tmp_path / "run")
    recipe = json.loads(json_path.read_text())["recipe"]
    assert recipe["iterations"] == 1 and recipe["stopped_by_time_limit"] is True
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_0000001.pt"


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
