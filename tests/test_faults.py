"""Faults: the daemon killed with clients waiting, the trainer killed mid-run, the device out of memory.

(tests/test_client.py has the single-client case of a daemon killed mid-request.)
"""

import os
import re
import resource
import shutil
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


# ---- a hostile model folder at start-up ---------------------------------------------------------

def test_models_and_serve_start_up_list_hostile_files_as_problems(models_dir, tmp_path):
    """JSON nested past the recursion limit and a FIFO named like metadata: `brushwork models` and
    `brushwork serve` list them as problems and serve the rest (issue 19, items 1 and 2)."""
    hostile = tmp_path / "hostile"
    shutil.copytree(models_dir, hostile)
    (hostile / "deep.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    os.mkfifo(hostile / "fifo.json")
    listing = subprocess.run([sys.executable, "-m", "backend.cli", "models", "--models", str(hostile)], cwd=REPO,
                             env=daemon_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    problems = [line for line in listing.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2 and "deep.json" in problems[0] and "fifo.json" in problems[1], listing.stdout
    assert "mosaic" in listing.stdout

    endpoint = f"ipc://{tmp_path}/hostile.sock"
    proc = start_daemon(tmp_path, endpoint, hostile)
    try:
        with Client(endpoint, timeout=10) as client:
            info = client.info()
            assert {"mosaic", "sr_x2"} <= {m["name"] for m in info["models"]}
            assert sum("deep.json" in p or "fifo.json" in p for p in info["problems"]) == 2
            data = bytes(range(256)) * 3
            assert bytes(client.stylize(data, 16, 12, FMT, "mosaic", strength=0.0).pixels) == data
    finally:
        assert stop_daemon(proc) == 0, daemon_output(proc)
    assert not os.path.exists(f"{tmp_path}/hostile.sock")


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
    killed = load_checkpoint(last)                     # the atomic write: the newest one loads
    killed_at = killed["iteration"]
    assert 4 <= killed_at < 14
    for path in run_dir.glob("checkpoint_*.pt"):       # and so does every other, the newest 3 kept
        assert load_checkpoint(path)["iteration"] == int(path.stem.split("_")[1])
    assert len(list(run_dir.glob("checkpoint_*.pt"))) <= 3
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*.json"))
    # what a kill during a checkpoint, preview or loss-curve write leaves (the kill above may have hit one)
    for name in (f"checkpoint_{killed_at + 1:07d}.pt", "preview.png", "loss.png"):
        (run_dir / f".{name}.k1ll3d.tmp").write_bytes(bytes(4096))

    resumed = subprocess.run(train_command(tmp_path, "--resume"), cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(latest_checkpoint(run_dir))
    assert final["iteration"] == 14 and final["history"]["iteration"] == list(range(1, 15))
    assert len(final["commands"]) == 2 and "--resume" in final["commands"][1]
    assert final["history"]["total"][:killed_at] == killed["history"]["total"]
    assert not list(run_dir.glob(".*.tmp")), "a partial write was left behind"
    assert sorted(p.name for p in run_dir.glob("checkpoint_*.pt")) == [f"checkpoint_{i:07d}.pt" for i in (12, 13, 14)]
    store = ModelStore([tmp_path / "models"], include_bundled=False, include_user=False)
    assert store.load(store.get("killed_style")) is not None


def test_a_run_whose_export_failed_is_exported_when_resumed(tmp_path):
    """Training finished, the export failed (here: --out is a file, not a folder): --resume exports it."""
    env = dict(daemon_env(tmp_path), OMP_NUM_THREADS="1")
    (tmp_path / "models").write_text("not a folder")
    command = train_command(tmp_path, "--iterations", "2")
    failed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and str(tmp_path / "models") in failed.stderr, failed.stderr
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["iteration"] == 2
    (tmp_path / "models").unlink()
    exported = subprocess.run(command + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
    assert exported.returncode == 0, exported.stderr
    store = ModelStore([tmp_path / "models"], include_bundled=False, include_user=False)
    assert store.get("killed_style").metadata["recipe"]["iterations"] == 2


def test_a_write_that_fails_names_the_file_and_reaches_the_client_as_io_error(tmp_path):
    """A full disk, played by a file-size limit on the trainer: the error names the checkpoint it
    could not write, and a training job reports code io_error, not internal."""
    from backend.daemon.trainer_process import TrainerProcess

    shared = shared_dir()
    errors = []
    options = {"style": shared / "data/styles/udnie.jpg", "content": shared / "data/content", "name": "no_room",
               "iterations": 3, "size": 32, "style_size": 32, "batch": 1, "channels": 8,
               "blocks": 1, "device": "cpu", "precision": "fp32",
               "vgg_weights": shared / "weights/vgg16_caffe_relu4_3.pth"}
    (tmp_path / "run").mkdir()
    job = TrainerProcess("style", tmp_path / "run", options, tmp_path / "models", on_error=errors.append)
    job.command = ["prlimit", f"--fsize={64 * 1024}", *job.command]   # checkpoints are larger
    job.start()
    assert job.wait(300)
    [error] = errors
    assert error.code == "io_error" and str(tmp_path / "run" / "checkpoint_0000003.pt") in error.message, error
    assert not list((tmp_path / "run").glob(".*.tmp")), "a partial checkpoint was left behind"


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
            retry = re.search(r"retrying with (\d+)-pixel tiles", daemon_output(proc))
            assert retry and int(retry.group(1)) < 2048, daemon_output(proc)

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
