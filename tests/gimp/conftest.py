"""Fixtures for the GIMP 3 end-to-end tests: one chroot per GIMP version, TCP daemons, a job folder.

Every test runs once per GIMP version (ids ``gimp3.0``, ``gimp3.2``), each in the Debian chroot
``tools/editor-chroot.sh`` builds (trixie: GIMP 3.0, sid: GIMP 3.2) under /var/cache/brushwork
(or ``$BRUSHWORK_CHROOTS``). A missing chroot skips that version, unless
``BRUSHWORK_REQUIRE_EDITORS=1``.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import gimp_harness`

from gimp_harness import GIMP_SUITES, chroot_for, free_port, gimp_binary  # noqa: E402
from daemon_process import start_daemon, stop_daemon  # noqa: E402
from helpers import training_photos  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", params=sorted(GIMP_SUITES), ids=lambda version: f"gimp{version}")
def gimp_version(request):
    """The GIMP version a test runs on: every GIMP test runs once per version."""
    return request.param


@pytest.fixture(scope="session")
def gimp_chroot(gimp_version):
    """Path of the chroot with GIMP ``gimp_version`` and python3-zmq, else skip (or fail when required)."""
    root = chroot_for(gimp_version)
    binary = gimp_binary(root)
    if binary != f"gimp-console-{gimp_version}":
        suite = GIMP_SUITES[gimp_version]
        reason = (f"no GIMP {gimp_version} chroot at {root} (found {binary or 'no gimp-console-3.x'}); "
                  f"build it with `sudo tools/editor-chroot.sh {suite}`")
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
def gimp_daemon(models_dir, lite_models_dir, tmp_path_factory):
    """A daemon serving the test models and ``udnie_lite`` (a real lite net of the bundled udnie),
    without training content; yields its endpoint."""
    yield from serve(models_dir, tmp_path_factory.mktemp("daemon"), "--models", str(lite_models_dir))


@pytest.fixture(scope="session")
def gimp_training_daemon(models_dir, tmp_path_factory):
    """A daemon that trains on three shared photos (``--content``) into ``trained/``; yields its endpoint."""
    directory = tmp_path_factory.mktemp("training-daemon")
    content = training_photos(directory / "content")
    yield from serve(models_dir, directory, "--content", str(content), "--train-out", str(directory / "trained"))


@pytest.fixture(scope="module")
def gimp_job_dir(gimp_chroot):
    """A fresh folder inside the chroot (as host path, chroot path) holding HOME and the job files.

    It lies in the chroot's /var/tmp: the Krita tests bind-mount the host's /tmp over the chroot's.
    """
    host = Path(tempfile.mkdtemp(prefix="brushwork-gimp-", dir=gimp_chroot / "var/tmp"))
    os.chmod(host, 0o755)
    yield host, "/" + str(host.relative_to(gimp_chroot))
    shutil.rmtree(host, ignore_errors=True)



@pytest.fixture(scope="session")
def gimp_local_daemon(models_dir, gimp_chroot, tmp_path_factory):
    """A daemon started as `make serve` starts it (no --content, on an IPC socket), whose socket and a
    folder of three photos GIMP in the chroot reaches at the same paths as the daemon does; yields
    (endpoint, photos folder)."""
    inside = Path(tempfile.mkdtemp(prefix="brushwork-gimp-local-", dir=gimp_chroot / "var/tmp"))
    os.chmod(inside, 0o755)
    shared_path = Path("/") / inside.relative_to(gimp_chroot)      # /var/tmp/brushwork-gimp-local-...
    shared_path.symlink_to(inside)                                   # the same folder outside the chroot
    training_photos(inside / "photos")
    endpoint = f"ipc://{shared_path}/daemon.sock"
    process = start_daemon(tmp_path_factory.mktemp("local-daemon"), endpoint, models_dir)
    yield endpoint, str(shared_path / "photos")
    stop_daemon(process)
    shared_path.unlink()
    shutil.rmtree(inside, ignore_errors=True)
