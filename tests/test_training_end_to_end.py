"""Whole training runs as people start them: what ``brushwork train style`` says before, during and
after; two torchrun (DDP) ranks ending identical; a running daemon serving a freshly trained model."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from backend.model_store import ModelStore
from tiny_training import CONTENT, REPO, STYLE, TINY, parse, train_style_run
from trainer.checkpoint import latest_checkpoint, load_checkpoint


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
