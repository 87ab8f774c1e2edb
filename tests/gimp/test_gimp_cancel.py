"""Cancel in real GIMP 3.0 and 3.2, as a user does it: the status bar's Cancel during a running Stylize.

The full GIMP (not gimp-console) runs under Xvfb, its docks hidden (in its sessionrc) so that the
status bar spans the bottom of the window. The driver starts Stylize on a large layer; its progress
shows in the status bar with GIMP's Cancel button. GIMP offers no other way in: the PDB's
``gimp-progress-cancel`` only reaches a progress a plug-in installed itself, so once the daemon
computes, the test clicks that button (xdotool). GIMP then closes the plug-in (asks it to quit and
kills it), the daemon sees the connection close and stops the job after the current tile, and the
driver's next Stylize is served. The test checks all of that, that the image is unchanged and that
no plug-in process is left.
"""

import io
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image
from gimp_cases import Case
from gimp_harness import (GIMP_TIMEOUT_S, chroot_command, free_port, gimp_command, install_plugin, read_results,
                          write_job, x_server, xdotool)

from daemon_process import daemon_output, start_daemon, stop_daemon

pytestmark = pytest.mark.gimp

U8 = "U8_NON_LINEAR"
LARGE = (2048, 1536)   # 12 x 16 tiles of 128 px (the test daemon's tile size): minutes on a CPU
BUSY_CPU_S = 2.0       # the daemon has computed this long on the job when Cancel is pressed
STATUS_BAR_PX = 24     # the status bar's height, at least


@pytest.fixture(scope="module")
def cancel_daemon(models_dir, tmp_path_factory):
    """A daemon of its own, so its log holds only this test's jobs; yields (endpoint, process)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    process = start_daemon(tmp_path_factory.mktemp("cancel-daemon"), endpoint, models_dir)
    yield endpoint, process
    stop_daemon(process)


def cpu_seconds(pid):
    """CPU time (user + system) process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100.0   # utime, stime in clock ticks (USER_HZ = 100)


def end(gimp, timeout):
    """GIMP's output once it has quit, killing it (and its namespace) after ``timeout`` seconds."""
    try:
        return gimp.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(gimp.pid, signal.SIGKILL)
        return gimp.communicate()[0]


def press_status_bar_cancel(root, display, window):
    """Click the Cancel button in GIMP's status bar. With the docks hidden the status bar spans the
    bottom of the window and its Cancel button is the rightmost light text there."""
    shot = subprocess.run(chroot_command(root, "env", f"DISPLAY=:{display}", "import", "-window", window, "png:-"),
                          capture_output=True, check=True).stdout
    grey = np.asarray(Image.open(io.BytesIO(shot)).convert("L"))
    strip = grey[-STATUS_BAR_PX:]
    rows, columns = np.nonzero(strip > 180)
    assert columns.size, "no status bar text at the bottom of GIMP's window"
    right = columns.max()
    x = right - 8
    y = grey.shape[0] - STATUS_BAR_PX + int(np.median(rows[columns > right - 30]))
    xdotool(root, display, "mousemove", "--window", window, str(x), str(y), "click", "1")
    print(f"\nclicked GIMP's status-bar Cancel at ({x}, {y}) of a {grey.shape[1]}x{grey.shape[0]} window")
    return shot


def wait_for(condition, what, timeout, gimp):
    """``condition()``'s first true value, polled until ``timeout``; the test fails if GIMP ends first."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if gimp.poll() is not None or time.monotonic() > deadline:
            output = end(gimp, 0)
            pytest.fail(f"{what} did not happen (GIMP exit {gimp.returncode}):\n{output}")
        time.sleep(0.5)
    return found


def test_cancel_in_gimp_stops_the_daemon_job_and_leaves_the_image_unchanged(gimp_chroot, gimp_version,
                                                                              cancel_daemon, gimp_job_dir, tmp_path):
    endpoint, daemon = cancel_daemon
    host, inside = gimp_job_dir
    profile = host / "home" / ".config" / "GIMP" / gimp_version
    profile.mkdir(parents=True, exist_ok=True)
    # GIMP's own session layout with the docks hidden: the status bar spans the window's bottom
    session = (gimp_chroot / "etc/gimp/3.0/sessionrc").read_text()
    (profile / "sessionrc").write_text(session.replace("(hide-docks no)", "(hide-docks yes)"))
    install_plugin(gimp_chroot, host / "home")
    style = {"style": "mosaic"}
    cancelled = Case("cancelled", U8, "stylize", style, [(*LARGE, True, (0, 0))], LARGE)
    after = Case("after", U8, "stylize", style, [(16, 12, True, (0, 0))], (16, 12))
    write_job(gimp_job_dir, [cancelled.spec, after.spec], {**cancelled.inputs(), **after.inputs()})
    with x_server(gimp_chroot) as display:
        command = gimp_command(gimp_chroot, inside, f"{inside}/home", endpoint, env=[f"DISPLAY=:{display}"],
                               gui=True)
        gimp = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        welcome = wait_for(lambda: xdotool(gimp_chroot, display, "search", "--onlyvisible", "--name",
                                           "^Welcome to GIMP"), "GIMP's Welcome dialog", GIMP_TIMEOUT_S, gimp)
        xdotool(gimp_chroot, display, "windowfocus", "--sync", welcome.split()[0], "key", "Escape")
        start = cpu_seconds(daemon.pid)
        wait_for(lambda: cpu_seconds(daemon.pid) - start >= BUSY_CPU_S, "the daemon computing", 120, gimp)
        # the image window may map a moment after the Welcome dialog: poll for it, as for the dialog
        window = wait_for(lambda: xdotool(gimp_chroot, display, "search", "--onlyvisible", "--name",
                                          "GNU Image Manipulation Program"), "GIMP's image window", 60, gimp)
        shot = press_status_bar_cancel(gimp_chroot, display, window.split()[0])
        (tmp_path / "cancel-pressed.png").write_bytes(shot)   # GIMP's window as Cancel was pressed
        output = end(gimp, GIMP_TIMEOUT_S)
    results = read_results(gimp_job_dir, output)
    log = daemon_output(daemon)

    result = results["cancelled"]
    assert result["status"] == "CANCEL", result
    assert result["plug_ins_left"] == [], "a brushwork plug-in process is still running after Cancel"
    image = np.frombuffer((host / result["image"]["layers"][0]["file"]).read_bytes(), np.uint8)
    assert np.array_equal(image, cancelled.layers[0][0].ravel()), "Cancel changed the image"

    stopped = re.search(r"stylize (\S+) failed at step (\d+) of (\d+): cancelled", log)
    assert stopped and int(stopped[2]) < int(stopped[3]), f"the job was not stopped part-way:\n{log}"
    assert re.search(rf"went away: stylize {re.escape(stopped[1])} cancelled", log), log
    assert results["after"]["status"] == "SUCCESS", results["after"]
    assert log.index(stopped[0]) < log.rindex(" done in "), f"the next job was not served after the cancel:\n{log}"
