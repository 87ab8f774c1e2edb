"""The installer finds each Krita's own Python and checks pyzmq there, also when Krita lives in a chroot.

Debian's Kritas embed different Pythons (Krita 5.1: 3.11, 5.2: 3.13, 5.3 and 6.0: 3.14); a
pyzmq importable by the installer's Python proves nothing about Krita's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from plugin_krita import installer  # noqa: E402


def test_krita_python_is_read_from_the_given_system_root(tmp_path):
    plugin = tmp_path / "usr" / "lib" / "x86_64-linux-gnu" / "kritaplugins" / "kritapykrita.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"\x7fELF\0...\0libpython3.14.so.1.0\0...")
    assert installer.krita_python(tmp_path) == ((3, 14), None)        # no interpreter beside it
    python = tmp_path / "usr" / "bin" / "python3.14"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert installer.krita_python(tmp_path) == ((3, 14), "/usr/bin/python3.14")   # a path inside the root
    assert installer.krita_python(tmp_path / "nothing-here") == (None, None)


@pytest.mark.krita
@pytest.mark.parametrize("krita", [k for k in harness.KRITAS if k.suite], ids=str)
def test_install_checks_pyzmq_in_the_chroot_krita_runs_in(krita, tmp_path, capsys):
    problem = krita.missing()
    if problem:
        if os.environ.get("BRUSHWORK_REQUIRE_EDITORS") == "1":
            pytest.fail(f"{krita}: {problem}")
        pytest.skip(f"{krita}: {problem}")
    version, interpreter = installer.krita_python(krita.root)
    probe = subprocess.run(["chroot", str(krita.root), interpreter, "-c", "import sys, zmq; print(sys.version_info[:2])"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr                       # the chroot's python3-zmq
    assert probe.stdout.strip() == str(version)

    summary = installer.install(home=tmp_path, krita_root=krita.root)
    assert f"pyzmq from {interpreter} in {krita.root}" in summary
    plugin = tmp_path / ".local" / "share" / "krita" / "pykrita" / "brushwork"
    assert not (plugin / "vendor").exists()
    assert json.loads((plugin / "install.json").read_text())["brushwork_executable"]

