"""The real-Krita suites' fixtures: each Krita of ``harness.KRITAS`` in turn, its template HOME, and
brushwork daemons to talk to.

Every test that takes ``krita_home`` runs once per Krita (5.1 on this machine; 5.2, 5.3 and 6.0 in
their Debian chroots), named in the test id (``[krita6.0-experimental-...]``); ``make test-krita6.0``
picks one by that id. A Krita that is not installed skips, or fails with
``BRUSHWORK_REQUIRE_EDITORS=1``. Run with ``pytest -m krita tests/krita``.
"""

import os
import sys
from pathlib import Path

import pytest

from daemon_process import start_daemon, stop_daemon
from helpers import training_photos

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


@pytest.fixture(scope="session", params=harness.KRITAS, ids=str)
def krita(request):
    """Each Krita in turn; one that cannot run here skips (fails when editors are required)."""
    problem = request.param.missing()
    if problem:
        if os.environ.get("BRUSHWORK_REQUIRE_EDITORS") == "1":
            pytest.fail(f"{request.param}: {problem}")
        pytest.skip(f"{request.param}: {problem}")
    return request.param


@pytest.fixture(scope="session")
def krita_home(krita, tmp_path_factory):
    """A template HOME for ``krita``: (krita, home)."""
    return krita, harness.build_template_home(krita, tmp_path_factory.mktemp(f"{krita}-template") / "home")


@pytest.fixture(scope="session")
def daemon(tmp_path_factory, models_dir):
    """A daemon without training content: it refuses train_style."""
    directory = tmp_path_factory.mktemp("daemon")
    endpoint = f"ipc://{directory}/daemon.sock"
    process = start_daemon(directory, endpoint, models_dir)
    yield endpoint
    stop_daemon(process)


@pytest.fixture(scope="session")
def training_daemon(tmp_path_factory, models_dir):
    """A daemon that trains on three shared photos (``brushwork serve --content``) into ``trained/``."""
    directory = tmp_path_factory.mktemp("training-daemon")
    content = training_photos(directory / "content")
    endpoint = f"ipc://{directory}/daemon.sock"
    process = start_daemon(directory, endpoint, models_dir, "--content", str(content),
                           "--train-out", str(directory / "trained"))
    yield endpoint
    stop_daemon(process)


@pytest.fixture(scope="session")
def draft_daemon(tmp_path_factory, models_dir, lite_models_dir):
    """A daemon that also serves ``udnie_lite``, a real lite net of the bundled udnie (the test model mosaic has none)."""
    directory = tmp_path_factory.mktemp("draft-daemon")
    endpoint = f"ipc://{directory}/daemon.sock"
    process = start_daemon(directory, endpoint, models_dir, "--models", str(lite_models_dir))
    yield endpoint
    stop_daemon(process)
