"""Shared fixtures: a directory of small deterministic models every test module can use."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))          # `import helpers`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # `import backend`, `trainer`

from helpers import distill_lite_model, make_model  # noqa: E402

STYLE_MODELS = ("mosaic", "starry_night")
SR_SCALES = (2, 4, 8)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    if config.getoption("--slow"):
        config.option.markexpr = "not krita and not gimp"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """A tmp dir with random-init style models 'mosaic', 'starry_night' and SR models 'sr_x2/4/8'."""
    directory = tmp_path_factory.mktemp("models")
    for seed, name in enumerate(STYLE_MODELS):
        make_model(directory, name, "style", 1, seed=seed)
    for scale in SR_SCALES:
        make_model(directory, f"sr_x{scale}", "sr", scale, seed=10 + scale)
    return directory



@pytest.fixture(scope="session")
def lite_models_dir(tmp_path_factory):
    """A tmp dir holding ``udnie_lite``: a real lite net of the bundled ``udnie``, distilled by the
    real trainer (2 iterations on 32-px crops: its output differs from udnie's). Given with ``--models``,
    it stands in for the bundled ``udnie_lite`` (a later dir overrides by name)."""
    root = tmp_path_factory.mktemp("lite")
    distill_lite_model(root / "models", root / "distill")
    return root / "models"
