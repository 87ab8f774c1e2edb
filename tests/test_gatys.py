"""The Gatys et al. optimisation baseline (projected L-BFGS over the image) with the real VGG-16 losses."""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from backend import cli
from backend.protocol import Cancelled
from trainer import data, gatys
from trainer.losses import LossWeights

SHARED = Path(os.environ.get("BRUSHWORK_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
CONTENT_IMAGE = SHARED / "data" / "content" / "chicago.jpg"
STYLE_IMAGE = SHARED / "data" / "styles" / "starry_night.jpg"
VGG_WEIGHTS = SHARED / "weights" / "vgg16_caffe_relu4_3.pth"


@pytest.fixture(scope="module")
def content():
    return data.load_image(CONTENT_IMAGE, max_side=64)


@pytest.fixture(scope="module")
def objective():
    style = data.load_image(STYLE_IMAGE, max_side=64)
    return gatys.build_objective(style, "caffe", VGG_WEIGHTS, LossWeights.defaults("caffe", "style"))


def test_objective_decreases_and_the_image_stays_in_range(content, objective):
    image, history = gatys.optimize(content, objective, iterations=10, init="noise", seed=0)
    assert len(history) == 11
    assert history[-1] < 0.5 * history[0]
    rises = sum(later > earlier * 1.001 for earlier, later in zip(history, history[1:]))
    assert rises <= 1
    assert image.shape == content.shape
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    with torch.no_grad():
        assert float(objective(image, content)[0]) == pytest.approx(history[-1], rel=1e-5)


def test_content_start_is_measured_at_iteration_zero(content, objective):
    image, history = gatys.optimize(content, objective, iterations=0, init="content")
    torch.testing.assert_close(image, content)
    with torch.no_grad():
        total, parts = objective(content, content)
    assert history == [pytest.approx(float(total), rel=1e-6)]
    assert float(parts["content"]) == 0.0 and float(parts["style"]) > 0


def test_noise_start_is_seeded_white_noise(content):
    a, b = gatys.initial_image(content, "noise", seed=3), gatys.initial_image(content, "noise", seed=3)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, gatys.initial_image(content, "noise", seed=4))
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0 and abs(float(a.mean()) - 0.5) < 0.05
    with pytest.raises(ValueError, match="unknown init"):
        gatys.initial_image(content, "zeros")


def test_progress_is_reported_and_cancel_stops_the_run(content, objective):
    seen = []
    with pytest.raises(Cancelled):
        gatys.optimize(content, objective, iterations=50, init="content",
                       progress=lambda done, total, value: seen.append((done, total, value)),
                       is_cancelled=lambda: len(seen) >= 2)
    assert [(done, total) for done, total, _ in seen] == [(1, 50), (2, 50)]
    assert all(value > 0 for _, _, value in seen)


def test_stylize_optimize_command_writes_the_image(tmp_path):
    out = tmp_path / "out.png"
    status = cli.main(["stylize", str(CONTENT_IMAGE), "--optimize", "--style-image", str(STYLE_IMAGE),
                       "-o", str(out), "--iterations", "2", "--size", "40", "--style-size", "40",
                       "--vgg-weights", str(VGG_WEIGHTS), "--device", "cpu", "-q"])
    assert status == 0
    with Image.open(out) as image:
        assert max(image.size) == 40 and image.mode == "RGB"


def test_stylize_optimize_command_reports_bad_input(tmp_path, capsys):
    status = cli.main(["stylize", str(CONTENT_IMAGE), "--optimize", "-o", str(tmp_path / "x.png")])
    assert status == 1
    assert "--style-image" in capsys.readouterr().err
    status = cli.main(["stylize", str(tmp_path / "missing.jpg"), "--optimize", "--style-image", str(STYLE_IMAGE),
                       "-o", str(tmp_path / "x.png"), "--vgg-weights", str(VGG_WEIGHTS)])
    assert status == 1
    assert "missing.jpg" in capsys.readouterr().err


def test_a_models_style_image_is_found_from_any_folder_or_asked_for(tmp_path, monkeypatch):
    """The bundled models record their style image relative to the checkout; ``$BRUSHWORK_SHARED``
    finds it elsewhere; a missing one asks for ``--style-image``."""
    monkeypatch.chdir(tmp_path)
    bundled = {"data": {"style_image": "../shared/data/styles/starry_night.jpg"}}
    monkeypatch.setenv("BRUSHWORK_SHARED", str(SHARED))
    assert gatys.style_image_of(bundled).samefile(STYLE_IMAGE)
    elsewhere = {"data": {"style_image": "/gone/wave.jpg"}}
    assert gatys.style_image_of(elsewhere) == SHARED / "data" / "styles" / "wave.jpg"
    monkeypatch.delenv("BRUSHWORK_SHARED")
    with pytest.raises(ValueError, match="'/gone/wave.jpg' is not available here; pass --style-image"):
        gatys.style_image_of(elsewhere)
    assert gatys.style_image_of(elsewhere, str(STYLE_IMAGE)) == STYLE_IMAGE
