"""A training run's folder and its checkpoints: written atomically, read without executing code.

A checkpoint is a dict of tensors and plain Python values (``torch.load(weights_only=True)``
can read it): model and optimizer state, iteration, loss history, the run's options and the
torch / numpy / Python RNG states. ``checkpoint_<iteration>.pt`` files live in the run dir.
"""

import io
import random
import re
from pathlib import Path

import numpy as np
import torch

from backend.model_save import partial_write_target, write_atomic
from backend.model_store import user_models_dir

FORMAT = 1
KEEP_CHECKPOINTS = 3   # the newest checkpoints a run keeps (each holds the net and Adam's state)
_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")
PREVIEW_FILE = "preview.png"       # the run dir's preview grid and loss curve (trainer.plots writes them)
LOSS_CURVE_FILE = "loss.png"


def checkpoint_path(run_dir, iteration):
    return Path(run_dir) / f"checkpoint_{iteration:07d}.pt"


def checkpoints(run_dir):
    """The checkpoints in ``run_dir``, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint_*.pt") if (m := _NAME.match(p.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir):
    """The checkpoint with the highest iteration in ``run_dir``, or None."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir, keep=KEEP_CHECKPOINTS):
    """Delete all but the newest ``keep`` checkpoints (``keep`` 0: keep all); return the deleted paths."""
    old = checkpoints(run_dir)[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return old


def _is_run_file(name):
    """Whether ``name`` is a file the run writes with write_atomic: a checkpoint, the preview, the loss curve."""
    return name is not None and (_NAME.match(name) is not None or name in (PREVIEW_FILE, LOSS_CURVE_FILE))


def remove_partial_writes(run_dir):
    """Delete the temp files of the run's writes that never finished (the process was killed during a
    checkpoint, preview or loss-curve write); return them."""
    partial = [p for p in Path(run_dir).glob(".*") if _is_run_file(partial_write_target(p.name))]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def rng_state():
    """The torch, numpy and Python RNG states as tensors and ints (weights_only-safe)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state):
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def save_checkpoint(path, checkpoint):
    """Write ``checkpoint`` to ``path`` atomically (temp file in the same dir + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **checkpoint}, buffer)
    write_atomic(path, buffer.getbuffer())
    return path


def load_checkpoint(path):
    """Read a checkpoint (no code execution); raise ValueError for foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unpickling error types
        raise ValueError(f"{path} is not a readable brushwork checkpoint: {exc}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path} is not a brushwork checkpoint (format {FORMAT})")
    return checkpoint


def default_run_dir(name):
    """The run folder of run ``name`` when ``--run-dir`` does not say: beside the user's models."""
    return user_models_dir().parent / "runs" / name
