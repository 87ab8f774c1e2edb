"""Fixtures for the GIMP 3 end-to-end tests: the trixie chroot, TCP daemons, a job folder.

The chroot comes from ``tools/editor-chroot.sh trixie`` (default /var/cache/brushwork/trixie, or
``BRUSHWORK_GIMP_CHROOT``). Without it the tests skip, unless ``BRUSHWORK_REQUIRE_EDITORS=1``.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import gimp_harness`

from gimp_harness import DEFAULT_CHROOT, free_port  # noqa: E402
from daemon_process import start_daemon, stop_daemon  # noqa: E402
from helpers import training_photos  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def gimp_chroot():
    """Path of a chroot with gimp-console-3.0 and python3-zmq, else skip (or fail when required)."""
    root = Path(os.environ.get("BRUSHWORK_GIMP_CHROOT", DEFAULT_CHROOT))
    if not (root / "usr/bin/gimp-console-3.0").exists():
        reason = f"no GIMP 3 chroot at {root}; build it with `sudo tools/editor-chroot.sh trixie {root}`"
        if os.environ.get("BRUSHWORK_REQUIRE_EDITORS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if os.geteuid() != 0 and shutil.which("unshare") is None:
        pytest.skip("chroot needs root or `unshare -r`")
    return root


def serve(models_dir, directory, *extra):
    """Start a brushwork daemon on loopback TCP (fp32, CPU, user data in ``directory``); yield its endpoint."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    process = start_daemon(directory, endpoint, models_dir, *extra)
    yield endpoint
    stop_daemon(process)


@pytest.fixture(scope="session")
def gimp_daemon(models_dir, tmp_path_factory):
    """A daemon serving the test models, without training content; yields its endpoint."""
    yield from serve(models_dir, tmp_path_factory.mktemp("daemon"))


@pytest.fixture(scope="session")
def gimp_training_daemon(models_dir, tmp_path_factory):
    """A daemon that trains on three shared photos (``--content``) into ``trained/``; yields its endpoint."""
    directory = tmp_path_factory.mktemp("training-daemon")
    content = training_photos(directory / "content")
    yield from serve(models_dir, directory, "--content", str(content), "--train-out", str(directory / "trained"))


@pytest.fixture(scope="session")
def gimp_job_dir(gimp_chroot):
    """A fresh folder inside the chroot (as host path, chroot path) holding HOME and the job files."""
    host = Path(tempfile.mkdtemp(prefix="brushwork-gimp-", dir=gimp_chroot / "tmp"))
    os.chmod(host, 0o755)
    yield host, "/" + str(host.relative_to(gimp_chroot))
    shutil.rmtree(host, ignore_errors=True)

