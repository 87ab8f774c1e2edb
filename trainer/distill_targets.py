"""The teacher's outputs for ``brushwork train distill``: computed once, cached on disk.

A *pool* of ``count`` training crops (content photos cut by a :class:`trainer.data.CropSampler`
with its zoom and flip augmentation: squares of random side, from the whole photo to ``zoom``
times closer, resized to the crop size) and what the teacher makes of each. The teacher runs
through :meth:`backend.engine.Engine.stylize`, the way users get it: mirrored out past the net's
reach with the crop's own instance-norm statistics, so the targets have no lines along the edges.

On disk, in the cache folder: ``targets.npy``, one uint8 array ``count x 2 x 3 x size x size``
(input crop, teacher output), and ``targets.json``, what made it and how many crops are done. It
is filled in chunks, so an interrupted build continues where it stopped; a cache made with other
settings is refused rather than mixed. Training then costs only the student's steps.

The teacher's *pattern* (:func:`phase_pattern`): its mean output at each of the ``period x
period`` positions of the net's stride grid, minus their mean (``starry_night``'s 4-px "screen
door"). A photo has a faint one of its own: brightness that changes down the picture (sky above,
ground below) makes the first row of every 4 x 4 block differ from the last, and that survives
averaging over the pool. So each target is cleaned crop by crop (:meth:`TargetPool.pairs`): its
pattern is replaced by its photo's, which takes out the teacher's fixed pattern and the part that
varies from image to image, and leaves the photo's own. The pool's *fixed pattern*, the
teacher's mean pattern less its photos', is kept for the model card.

Some teachers paint flat white patches that look like holes (``wave``'s; :func:`trainer.metrics.blown_mask`).
Each target's are filled from around them as the target is made (:func:`fill_blown_patches`), and
the record counts them (``blown_patches_filled``).
"""

import json
import os
import sys
import time

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur
from tqdm import tqdm

from backend.stride_pattern import phase_pattern as image_phase_pattern, replace_phase_pattern
from trainer.metrics import blown_mask

CHUNK = 16          # crops made between two saves of the progress record
PERIOD = 4          # a StyleNet's stride grid: two stride-2 convolutions
FILL_GROW = 3       # px: a flat white patch's fill reaches this far past its edge (its soft rim)
FILL_SIGMA = 8      # px: the Gaussian over which a patch's fill averages what lies around it


def phase_pattern(images, period=PERIOD):
    """The mean of ``images`` (N x C x H x W, any array dtype, e.g. a memory map, read one image at a
    time) at each position of a ``period`` x ``period`` grid anchored at the top-left, minus the
    mean over positions: C x period x period float64
    (:func:`backend.stride_pattern.phase_pattern`, averaged over the images)."""
    total = sum(image_phase_pattern(np.asarray(image).transpose(1, 2, 0), period) for image in images)
    return (total / len(images)).transpose(2, 0, 1)


def pattern_rms_levels(pattern):
    """Root mean square of a :func:`phase_pattern` of [0, 1] images in 8-bit luma levels (BT.601 weights)."""
    luma = 0.299 * pattern[0] + 0.587 * pattern[1] + 0.114 * pattern[2]
    return float(np.sqrt(np.mean(luma ** 2)) * 255)


def fill_blown_patches(target, photo):
    """``target`` (H x W x 3 float array in [0, 1], the teacher's output for ``photo``) with its flat
    white patches (:func:`trainer.metrics.blown_mask`, grown by :data:`FILL_GROW` px) filled from
    around them: the mean of the pixels outside, weighted by a Gaussian of :data:`FILL_SIGMA` px
    (normalised convolution). The student is then taught a smooth fill there, not a hole, and its
    other terms paint texture over it. Returns the filled copy and the number of patches."""
    mask, count = blown_mask(target * 255, photo * 255)
    if not count:
        return target, 0
    grown = torch.from_numpy(mask.astype(np.float32))[None, None]
    grown = torch.nn.functional.max_pool2d(grown, 2 * FILL_GROW + 1, 1, FILL_GROW)[0]
    keep = 1 - grown
    image = torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1), np.float32))
    size = 4 * FILL_SIGMA + 1
    weight = gaussian_blur(keep, [size, size], [FILL_SIGMA, FILL_SIGMA])
    fill = gaussian_blur(image * keep, [size, size], [FILL_SIGMA, FILL_SIGMA]) / weight.clamp(min=1e-6)
    filled = image * keep + fill * grown
    return filled.numpy().transpose(1, 2, 0), count


class TargetPool:
    """The cached (input, target) pairs of a finished build, read from the memory-mapped array."""

    def __init__(self, array, fixed_pattern, blown_patches_filled=None):
        self.array = array
        self.fixed_pattern = fixed_pattern      # C x period x period, [0, 1] units: for the model card
        self.blown_patches_filled = blown_patches_filled   # in the teacher's outputs (None: a cache made before)
        self.count = len(array)

    def pairs(self, indices):
        """Inputs and targets of the crops ``indices`` as float tensors in [0, 1] (N x 3 x S x S);
        each target's period-4 pattern replaced by its photo's (the module docstring)."""
        pairs = np.stack([self.array[i] for i in indices]).astype(np.float32)
        pairs /= 255
        for photo, target in pairs:     # in place, through channels-last views
            replace_phase_pattern(target.transpose(1, 2, 0), photo.transpose(1, 2, 0), PERIOD)
        np.clip(pairs, 0, 1, out=pairs)
        pairs = torch.from_numpy(pairs)
        return pairs[:, 0].contiguous(), pairs[:, 1].contiguous()


def _read_record(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_record(path, record):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def build_targets(directory, identity, sampler, teacher, count, show_progress=True):
    """Fill (or continue) the cache in ``directory`` with ``count`` crops drawn from ``sampler``
    (crop ``i`` is ``sampler.sample(i)``) and ``teacher``'s output for each (``teacher``: a
    function HxWx3 float32 array -> array); return (:class:`TargetPool`, seconds spent here).

    ``identity`` (a JSON-able dict: teacher, its weights hash, crop settings, photos...) is stored
    with the cache; a cache with another identity raises ValueError.
    """
    directory.mkdir(parents=True, exist_ok=True)
    record_path, array_path = directory / "targets.json", directory / "targets.npy"
    record = _read_record(record_path)
    if record is not None and record.get("identity") != identity:
        changed = sorted(k for k in {**identity, **record.get("identity", {})}
                         if identity.get(k) != record.get("identity", {}).get(k))
        raise ValueError(f"the teacher targets cached in {directory} were made with other settings "
                         f"({', '.join(changed)}); delete that folder to make them again, or choose another --run-dir")
    if record is None or not array_path.is_file():
        record = {"identity": identity, "done": 0, "seconds": 0.0}
        array = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8,
                                          shape=(count, 2, 3, sampler.size, sampler.size))
        _write_record(record_path, record)
    else:
        array = np.load(array_path, mmap_mode="r+")
    started, before = time.monotonic(), record["seconds"]
    if record["done"] < count:
        with tqdm(total=count, initial=record["done"], desc="teacher targets", unit="crop", file=sys.stderr,
                  disable=not show_progress, dynamic_ncols=True) as bar:
            for first in range(record["done"], count, CHUNK):
                last = min(first + CHUNK, count)
                for i in range(first, last):
                    crop = sampler.sample(i)
                    image = crop.permute(1, 2, 0).numpy()
                    array[i, 0] = np.round(image * 255).astype(np.uint8).transpose(2, 0, 1)
                    out, filled = fill_blown_patches(np.clip(teacher(image), 0, 1), image)
                    record["blown_patches_filled"] = record.get("blown_patches_filled", 0) + filled
                    array[i, 1] = np.round(out * 255).astype(np.uint8).transpose(2, 0, 1)
                    bar.update(1)
                array.flush()
                record.update(done=last, seconds=round(before + time.monotonic() - started, 1))
                _write_record(record_path, record)
    if "fixed_pattern" not in record:     # views: read 64 crops at a time
        record["fixed_pattern"] = ((phase_pattern(array[:, 1]) - phase_pattern(array[:, 0])) / 255).tolist()
        _write_record(record_path, record)
    read_only = np.load(array_path, mmap_mode="r")
    return TargetPool(read_only, np.asarray(record["fixed_pattern"]), record.get("blown_patches_filled")), \
        record["seconds"]

