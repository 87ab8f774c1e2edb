"""Shared fixtures: a directory of small deterministic models every test module can use, and the
Krita plug-in as its installer lays it out."""

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))          # `import helpers`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # `import backend`, `trainer`

from helpers import make_model  # noqa: E402

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
def krita_module(tmp_path_factory):
    """``krita_module("pixels")``: a module of the Krita plug-in as the installer stages it, imported
    outside Krita (where it registers nothing). Its modules import the client the installer vendors
    into it (``brushwork_client``), so tests import that copy: what ships is what is tested."""
    from plugin_krita import installer
    target = tmp_path_factory.mktemp("krita-plugin") / "brushwork"
    installer.stage(target, recorded_executable=None)
    name = "staged_krita_brushwork"
    spec = importlib.util.spec_from_file_location(name, target / "__init__.py",
                                                  submodule_search_locations=[str(target)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return lambda module: importlib.import_module(f"{name}.{module}")
