"""Faults: the daemon killed with clients waiting, the trainer killed mid-run, the device out of memory.

(tests/test_client.py has the single-client case of a daemon killed mid-request.)
"""

import os
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest

from backend import pixels, protocol
from backend.client import Client
from backend.model_store import ModelStore
from daemon_process import REPO, daemon_env, daemon_output, start_daemon, stop_daemon
from helpers import random_image, shared_dir
from trainer.checkpoint import latest_checkpoint, load_checkpoint

FMT = {"dtype": "u8", "channels": "RGBA"}
TIMEOUT = 3.0


# ---- the daemon killed -----------------------------------------------------------------------

def test_daemon_killed_with_a_running_and_queued_jobs_every_client_fails_fast_then_reconnects(
        models_dir, tmp_path):
    endpoint = f"ipc://{tmp_path}/killed.sock"
    proc = start_daemon(tmp_path, endpoint, models_dir)
    big = pixels.encode(random_image(256, 320, 1), None, FMT)
    clients = [Client(endpoint, timeout=TIMEOUT) for _ in range(3)]
    queued = threading.Barrier(3)
    outcomes, killed_at = {}, []

    def progress(done, total, message):
        if message.startswith("waiting"):
            queued.wait(30)

    def job(n):
        try:
            clients[n].stylize(big, 320, 256, FMT, "mosaic", progress=progress if n else None)
            outcomes[n] = "result"
        except protocol.BrushworkError as exc:
            outcomes[n] = (exc.code, time.monotonic() - killed_at[0], exc.message)

    threads = [threading.Thread(target=job, args=(0,))]
    threads[0].start()
    time.sleep(0.3)   # job 0 runs; jobs 1 and 2 wait behind it
    threads += [threading.Thread(target=job, args=(n,)) for n in (1, 2)]
    for thread in threads[1:]:
        thread.start()
    queued.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    killed_at.append(time.monotonic())
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a client hangs after the daemon died"
    proc.wait(10)
    stop_daemon(proc)
    for code, seconds, message in outcomes.values():
        assert code == "timeout" and seconds < TIMEOUT + 2 and endpoint in message
    assert len(outcomes) == 3

    proc = start_daemon(tmp_path, endpoint, models_dir)   # the same endpoint; kill -9 left its socket file
    try:
        small = pixels.encode(random_image(9, 11, 2), None, FMT)
        for client in clients:       # the same Client objects reconnect by themselves
            assert bytes(client.stylize(small, 11, 9, FMT, "mosaic", strength=0.0).pixels) == small.tobytes()
            client.close()
    finally:
        assert stop_daemon(proc) == 0, daemon_output(proc)


# ---- the trainer killed ----------------------------------------------------------------------

def train_command(tmp_path, *extra):
    shared = shared_dir()
    return [sys.executable, "-m", "trainer", "train", "style", "--style", str(shared / "data/styles/udnie.jpg"),
            "--content", str(shared / "data/content"), "--size", "32", "--style-size", "48", "--batch", "1",
            "--channels", "8", "--blocks", "1", "--precision", "fp32", "--device", "cpu",
            "--vgg-weights", str(shared / "weights/vgg16_caffe_relu4_3.pth"), "--iterations", "14",
            "--checkpoint-every", "1", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "models"),
            "--name", "killed_style", *extra]


def test_trainer_killed_mid_run_resumes_from_its_last_checkpoint(tmp_path):
    """A checkpoint per iteration, so the kill most likely lands in or near a checkpoint write."""
    run_dir = tmp_path / "run"
    env = dict(daemon_env(tmp_path), OMP_NUM_THREADS="1")
    trainer = subprocess.Popen(train_command(tmp_path), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and trainer.poll() is None:
        last = latest_checkpoint(run_dir) if run_dir.is_dir() else None
        if last is not None and int(last.stem.split("_")[1]) >= 4:
            break
        time.sleep(0.02)
    assert trainer.poll() is None, trainer.stderr.read().decode()
    trainer.kill()
    trainer.wait()
    trainer.stderr.close()

    last = latest_checkpoint(run_dir)
    killed_at = load_checkpoint(last)["iteration"]    # the atomic write: the newest one loads
    assert 4 <= killed_at < 14
    for path in run_dir.glob("checkpoint_*.pt"):       # and so does every other
        assert load_checkpoint(path)["iteration"] == int(path.stem.split("_")[1])
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*.json"))

    resumed = subprocess.run(train_command(tmp_path, "--resume"), cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(latest_checkpoint(run_dir))
    assert final["iteration"] == 14 and final["history"]["iteration"] == list(range(1, 15))
    assert len(final["commands"]) == 2 and "--resume" in final["commands"][1]
    assert final["history"]["total"][:killed_at] == load_checkpoint(last)["history"]["total"]
    store = ModelStore([tmp_path / "models"], include_bundled=False, include_user=False)
    assert store.load(store.get("killed_style")) is not None


# ---- out of memory ---------------------------------------------------------------------------

def vm_size_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))


def limit_address_space(pid, headroom_mib):
    """Let process ``pid`` map at most ``headroom_mib`` MiB more than it has mapped now."""
    limit = vm_size_kib(pid) * 1024 + headroom_mib * 2**20
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, resource.prlimit(pid, resource.RLIMIT_AS)[1]))


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_out_of_memory_retries_with_smaller_tiles_then_fails_clearly_and_the_daemon_lives(models_dir, tmp_path):
    """The daemon runs images up to 2048**2 whole; under a lowered RLIMIT_AS a 1024**2 one does not fit
    whole (over 370 MiB) but does in 512-pixel tiles (about 200 MiB). glibc's mmap threshold is
    fixed at 1 MiB: by default it grows after each large free, later large buffers then come from
    the heap, which returns memory only from its top, and the room left for a retry varied by
    tens of MiB from run to run."""
    endpoint = f"ipc://{tmp_path}/oom.sock"
    proc = start_daemon(tmp_path, endpoint, models_dir, "--tile-size", "2048",
                        env={"MALLOC_MMAP_THRESHOLD_": "1048576"})
    image = pixels.encode(random_image(1024, 1024, 3), None, FMT)
    small = pixels.encode(random_image(64, 64, 4), None, FMT)
    try:
        with Client(endpoint, timeout=60) as client:
            warm = client.stylize(small, 64, 64, FMT, "mosaic")        # loads the net, starts every thread
            limit_address_space(proc.pid, 280)
            result = client.stylize(image, 1024, 1024, FMT, "mosaic")
            assert (result.width, result.height) == (1024, 1024)
            assert len(set(bytes(result.pixels)[:4096])) > 16           # a real image, not a blank one
            assert "retrying with 512" in daemon_output(proc)

            limit_address_space(proc.pid, 40)   # now not even the smallest tiles fit
            with pytest.raises(protocol.OutOfMemory) as err:
                client.stylize(image, 1024, 1024, FMT, "mosaic")
            assert "out of memory" in err.value.message and "Traceback" not in err.value.message
            assert client.ping() > 0
            hard = resource.prlimit(proc.pid, resource.RLIMIT_AS)[1]
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (hard, hard))
            assert bytes(client.stylize(small, 64, 64, FMT, "mosaic").pixels) == bytes(warm.pixels)
    finally:
        assert stop_daemon(proc) == 0, daemon_output(proc)
