"""Take docs/img/krita-docker.png: real Krita under Xvfb, the brushwork docker after a stylize.

    .venv/bin/python tests/krita/screenshot.py [--krita 6.0] [docs/img/krita-docker.png]

``--krita`` picks one of the tested Kritas (tests/krita/harness.py; 6.0, the default, runs in
the experimental chroot, so as root). The daemon serves the bundled models (backend/models),
so the result is a real stylization.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from helpers import shared_dir  # noqa: E402
from PIL import Image  # noqa: E402

SCRIPT = """
import brushwork
controller = brushwork.controller
window = app.activeWindow()
window.qwindow().setGeometry(0, 0, 1280, 960)
doc = app.openDocument(PHOTO)
window.addView(doc)
docker = next(d for d in app.dockers() if d.objectName() == "brushwork_docker")
docker.show()
docker.raise_()

def stylize(tries=0):
    if tries > 150:
        fail(f"no models: busy={controller.busy} error={controller.last_error!r}")
    if controller.busy or not controller.models:
        after(200, lambda: stylize(tries + 1))
        return
    panel = docker.widget()
    panel.gallery.setCurrentRow(0)
    app.action("brushwork_stylize").trigger()
    after(500, wait)

def wait():
    if controller.busy:
        after(200, wait)
        return
    after(1500, shoot)

def shoot():
    window.qwindow().grab().save(OUTPUT)
    finish()

controller.refresh(start_daemon=False)
after(500, stylize)
"""


def wait_for_daemon(endpoint):
    from backend.client import Client
    from backend.protocol import Unavailable
    for _ in range(60):
        try:
            return Client(endpoint, timeout=1.0).ping()
        except Unavailable:
            pass
    raise SystemExit("the daemon did not start")


def main(output, krita):
    problem = krita.missing()
    if problem:
        raise SystemExit(f"{krita}: {problem}")
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = tmp / "chicago.png"
        with Image.open(shared_dir() / "data" / "content" / "chicago.jpg") as img:
            img.convert("RGB").resize((480, 320), Image.Resampling.LANCZOS).save(photo)
        endpoint = f"ipc://{tmp}/daemon.sock"
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "brushwork"), "serve", "--endpoint", endpoint,
                                   "--device", "cpu"])
        try:
            wait_for_daemon(endpoint)
            home = harness.build_template_home(krita, tmp / "template" / "home")
            harness.write_settings(home, endpoint=endpoint, manage_daemon=False, strength=0.8)
            script = tmp / "script.py"
            shot = tmp / "shot.png"   # under /tmp, which a chroot's Krita shares; the checkout is read-only there
            script.write_text(f"PHOTO = {str(photo)!r}\nOUTPUT = {str(shot)!r}\n{SCRIPT}", encoding="utf-8")
            run = harness.run_krita(krita, home, tmp / "run", script, copy_home=False)
            error = tmp / "run" / "out" / "driver_error.txt"
            if not shot.exists():
                details = error.read_text() if error.exists() else run.stdout[-3000:]
                raise SystemExit(f"no screenshot (Krita exit {run.returncode}):\n{details}")
            shutil.copyfile(shot, output)
        finally:
            daemon.terminate()
            daemon.wait()
    print(f"{output} ({krita}: Krita {krita.installed_version()})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=HERE.parents[1] / "docs" / "img" / "krita-docker.png")
    parser.add_argument("--krita", default="6.0", choices=[k.version for k in harness.KRITAS])
    args = parser.parse_args()
    main(args.output, next(k for k in harness.KRITAS if k.version == args.krita))
