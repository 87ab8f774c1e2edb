"""`brushwork eval sr` / `eval style` and the functions behind them, on real data and real nets."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend import cli
from backend.model_save import save_model
from backend.nets import SRNet, StyleNet
from trainer.baselines import BaselineStore, objective_digest
from trainer import data, eval_sr, eval_style, evaluate, metrics
from trainer.gatys import build_objective
from trainer.losses import LossWeights

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
SR_DATA = SHARED / "data" / "sr"
STYLE_IMAGE = SHARED / "data" / "styles" / "starry_night.jpg"
VGG_WEIGHTS = SHARED / "weights" / "vgg16_caffe_relu4_3.pth"


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory):
    """Two small HR images (Set5 crops, sides not multiples of 4) in a folder."""
    directory = tmp_path_factory.mktemp("hr")
    for name, box in (("bird", (60, 70, 126, 121)), ("butterfly", (100, 90, 170, 149))):
        Image.open(SR_DATA / "Set5" / f"{name}.png").convert("RGB").crop(box).save(directory / f"{name}.png")
    return directory


def table_cells(text, key, column=0):
    """The cells of the Markdown table row whose cell ``column`` is ``key``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > column and cells[column] == key:
            return cells
    raise AssertionError(f"no row {key!r} in:\n{text}")


# ----------------------------------------------------------------------------- eval sr

@pytest.mark.parametrize("dataset, psnr, ssim", [("Set5", 28.43, 0.811), ("Set14", 26.09, 0.705)])
def test_bicubic_x4_reproduces_the_published_reference(dataset, psnr, ssim):
    rows = eval_sr.evaluate_sr(None, evaluate.image_paths([SR_DATA / dataset]), scale=4)
    assert len(rows) == {"Set5": 5, "Set14": 14}[dataset]
    mean = eval_sr.mean_row(rows)
    assert round(mean["bicubic_psnr"], 2) == psnr
    assert round(mean["bicubic_ssim"], 3) == ssim
    assert "model_psnr" not in mean


def test_a_bicubic_callable_scores_exactly_like_the_bicubic_baseline(hr_dir):
    def bicubic(lr):   # float32 HxWx3 in [0, 1] -> x2 bicubic
        image = Image.fromarray(metrics.to_uint8_array(lr))
        return np.asarray(image.resize((image.width * 2, image.height * 2), Image.BICUBIC)) / 255.0

    rows = eval_sr.evaluate_sr(bicubic, evaluate.image_paths([hr_dir]), scale=2, keep_images=True)
    for row in rows:
        assert row["model_psnr"] == row["bicubic_psnr"] and row["model_ssim"] == row["bicubic_ssim"]
        images = row["images"]
        assert images["hr"].size == images["model"].size == (images["lr"].width * 2, images["lr"].height * 2)
        assert images["hr"].width % 2 == 0 and images["hr"].height % 2 == 0
    table = eval_sr.sr_table(rows, "copy")
    assert table_cells(table, "**mean**")[1:4] == table_cells(table, "**mean**")[4:7]


def test_an_upscaler_with_a_checkerboard_scores_a_high_grid_and_bicubic_a_low_one(hr_dir):
    pattern = np.array([[1, -1, 0, 1], [-1, 1, 1, 0], [0, 1, -1, -1], [1, 0, -1, 1]]) * 8 / 255

    def bicubic_with_a_checkerboard(lr):   # float32 HxWx3 in [0, 1] -> x4, plus a 4-pixel pattern of +-8 levels
        image = Image.fromarray(metrics.to_uint8_array(lr))
        up = np.asarray(image.resize((image.width * 4, image.height * 4), Image.BICUBIC)) / 255.0
        return up + np.tile(pattern, (image.height, image.width))[..., None]

    rows = eval_sr.evaluate_sr(bicubic_with_a_checkerboard, evaluate.image_paths([hr_dir]), scale=4)
    for row in rows:
        assert row["model_grid"] > 2 and row["bicubic_grid"] < 0.5


def test_a_net_with_the_wrong_scale_is_rejected(hr_dir):
    with pytest.raises(ValueError, match="expected"):
        eval_sr.evaluate_sr(SRNet(scale=2, channels=4, blocks=1), evaluate.image_paths([hr_dir]), scale=4)


def test_eval_sr_cli_writes_table_and_grid_for_a_tiny_model(hr_dir, tmp_path):
    torch.manual_seed(0)
    net = SRNet(scale=2, channels=4, blocks=1).eval()
    models = tmp_path / "models"
    save_model(models, "tiny_sr", net, {"display_name": "Tiny", "loss": "feat", "vgg": "caffe"})
    out = tmp_path / "out"
    status = cli.main(["eval", "sr", "--model", "tiny_sr", "--models", str(models), "--data", str(hr_dir),
                       "--out-dir", str(out), "--device", "cpu"])
    assert status == 0
    table = (out / "sr_x2_tiny_sr.md").read_text()
    # The table's figures are the metrics of the net's own output (run here directly, not via the Engine).
    rows = eval_sr.evaluate_sr(net, evaluate.image_paths([hr_dir]), scale=2)
    for row in rows + [eval_sr.mean_row(rows)]:
        cells = table_cells(table, "**mean**" if row["image"] == "mean" else row["image"])
        assert float(cells[1]) == pytest.approx(row["bicubic_psnr"], abs=0.006)
        assert float(cells[4]) == pytest.approx(row["model_psnr"], abs=0.02)
        assert float(cells[5]) == pytest.approx(row["model_ssim"], abs=0.001)
        assert float(cells[6]) == pytest.approx(row["model_grid"], rel=0.05, abs=0.01)
    assert row["model_psnr"] < row["bicubic_psnr"]          # an untrained net is worse than bicubic
    grid = Image.open(out / f"sr_x2_tiny_sr_{hr_dir.name}.png")
    cell = eval_sr.GRID_CROP * eval_sr.GRID_ZOOM
    assert grid.size == (5 * cell, 2 * (cell + eval_sr.GRID_LABEL_HEIGHT))   # overview + LR, bicubic, model, HR
    assert len(np.unique(np.asarray(grid)[:cell, cell:].reshape(-1, 3), axis=0)) > 100   # crops, not blank


def test_eval_sr_cli_writes_into_a_run_folder_not_the_current_one(hr_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert cli.main(["eval", "sr", "--bicubic-only", "--scale", "2", "--data", str(hr_dir)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    runs = list((tmp_path / "data" / "brushwork" / "runs").glob("eval-sr-bicubic-*"))
    assert len(runs) == 1 and (runs[0] / "sr_x2_bicubic.md").is_file()
    assert str(runs[0]) in capsys.readouterr().out


def test_eval_sr_cli_reports_bad_input(tmp_path, capsys):
    status = cli.main(["eval", "sr", "--data", str(tmp_path / "missing"), "--out-dir", str(tmp_path)])
    assert status == 1
    assert "missing" in capsys.readouterr().err
    status = cli.main(["eval", "sr", "--model", "no_such_model", "--models", str(tmp_path),
                       "--data", str(SR_DATA / "Set5"), "--out-dir", str(tmp_path)])
    assert status == 1
    assert "no_such_model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- eval style

@pytest.fixture(scope="module")
def content_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("content")
    Image.open(SHARED / "data" / "content" / "chicago.jpg").convert("RGB").resize((48, 40)).save(directory / "chi.png")
    return directory


def test_evaluate_style_measures_net_content_and_lbfgs(content_dir):
    torch.manual_seed(0)
    style = data.load_image(STYLE_IMAGE, max_side=32)
    objective = build_objective(style, "caffe", VGG_WEIGHTS, LossWeights.defaults("caffe", "style"))
    net = StyleNet(channels=4, blocks=1)
    rows = eval_style.evaluate_style(net, objective, evaluate.image_paths([content_dir]), sizes=[32],
                                   iterations=[4, 2])
    (row,) = rows
    assert list(row["lbfgs"]) == [2, 4] and len(row["history"]) == 5
    assert row["lbfgs"] == {2: row["history"][2], 4: row["history"][4]}
    assert row["lbfgs"][4] < row["history"][0]
    content = eval_style.square_content(content_dir / "chi.png", 32)
    assert content.shape == (1, 3, 32, 32)
    with torch.no_grad():
        total, parts = objective(content, content)
        assert row["content"] == pytest.approx(float(total), rel=1e-6)
        assert float(parts["content"]) == 0.0
        assert row["network"] == pytest.approx(float(objective(net.eval()(content), content)[0]), rel=1e-5)
    assert list(row["terms"]) == ["net", "L-BFGS 4"]
    for output, total in (("net", row["network"]), ("L-BFGS 4", row["lbfgs"][4])):
        terms = row["terms"][output]
        style = [name for name in terms if name.startswith("style ")]
        assert style == [f"style {layer}" for layer in objective.style_layers]
        assert sum(terms.values()) == pytest.approx(total, rel=1e-4)        # the split adds up to the objective


def test_eval_style_cli_writes_table_and_plot(content_dir, tmp_path):
    torch.manual_seed(0)
    weights = LossWeights.defaults("caffe", "style")
    models = tmp_path / "models"
    save_model(models, "tiny_style", StyleNet(channels=4, blocks=1),
               {"loss": "style", "vgg": "caffe", "recipe": {"style_size": 32, "loss_weights": weights.as_dict()},
                "data": {"style_image": str(STYLE_IMAGE)}})
    out = tmp_path / "out"
    command = ["eval", "style", "--model", "tiny_style", "--models", str(models), "--content", str(content_dir),
               "--sizes", "32", "--iterations", "1", "3", "--out-dir", str(out), "--vgg-weights", str(VGG_WEIGHTS),
               "--device", "cpu", "--baselines", str(tmp_path / "baselines.json")]
    assert cli.main(command) == 0
    table = (out / "style_tiny_style.md").read_text()
    assert "L-BFGS runs: 1 on " in table and "read from" not in table
    assert cli.main(command) == 0                                       # again: the L-BFGS run is read back
    again = (out / "style_tiny_style.md").read_text()
    assert "1 of 1 read from" in again and again.replace("; 1 of 1 read from " + str(tmp_path / "baselines.json"), "") == table
    assert "L-BFGS 1 | L-BFGS 3" in table
    assert "| 32 | net | " in table and "| 32 | L-BFGS 3 | " in table and "style relu3_3" in table
    cells = table_cells(table, "chi", column=1)
    values = [float(v) for v in cells[2:]]           # content image, net, L-BFGS 1, L-BFGS 3
    assert all(np.isfinite(values)) and values[3] < values[2]
    assert table_cells(table, "**mean**", column=1)[2:] == cells[2:]        # one image: the mean is that image
    assert re.search(r"32 px: the mean L-BFGS objective (reaches the net's level after \d+|.*not within 3)", table)
    plot = Image.open(out / "style_tiny_style.png")
    assert plot.size[0] > 300 and plot.size[1] > 200


def test_stored_baselines_are_read_back_and_only_for_the_same_objective(content_dir, tmp_path):
    style = data.load_image(STYLE_IMAGE, max_side=32)
    weights = LossWeights.defaults("caffe", "style")
    objective = build_objective(style, "caffe", VGG_WEIGHTS, weights)
    paths = evaluate.image_paths([content_dir])

    def evaluate_with(store, objective=objective, seed=0):
        return eval_style.evaluate_style(None, objective, paths, sizes=[32], iterations=[3], seed=seed,
                                       baselines=store, objective_id=objective_digest(style, objective))

    (first,) = evaluate_with(BaselineStore(tmp_path / "baselines.json"))
    (again,) = evaluate_with(BaselineStore(tmp_path / "baselines.json"))       # a new store: read from the file
    assert not first["lbfgs_stored"] and again["lbfgs_stored"] and again["lbfgs_device"] == first["lbfgs_device"]
    assert again["history"] == first["history"] and again["terms"] == first["terms"]
    (other_seed,) = evaluate_with(BaselineStore(tmp_path / "baselines.json"), seed=1)
    heavier = build_objective(style, "caffe", VGG_WEIGHTS, LossWeights(**{**weights.as_dict(), "style": 2 * weights.style}))
    (other_weights,) = evaluate_with(BaselineStore(tmp_path / "baselines.json"), heavier)
    assert not other_seed["lbfgs_stored"] and not other_weights["lbfgs_stored"]
    assert other_weights["history"][-1] != first["history"][-1]
    assert len(BaselineStore(tmp_path / "baselines.json").runs) == 3
    for broken in ("{", '{"format": 1, "runs": {"abc": {"history": 3}}}', "[]"):
        (tmp_path / "broken.json").write_text(broken)
        with pytest.raises(ValueError, match="cannot read the baselines file .*broken.json"):
            BaselineStore(tmp_path / "broken.json")


def test_eval_style_cli_needs_a_style_image(content_dir, tmp_path, capsys):
    models = tmp_path / "models"
    save_model(models, "lost_style", StyleNet(channels=4, blocks=1),
               {"loss": "style", "vgg": "caffe", "data": {"style_image": str(tmp_path / "gone.jpg")}})
    status = cli.main(["eval", "style", "--model", "lost_style", "--models", str(models), "--content",
                       str(content_dir), "--sizes", "32", "--iterations", "1", "--out-dir", str(tmp_path)])
    assert status == 1
    assert "--style-image" in capsys.readouterr().err
