"""Writing a model's files: the net's weights, its metadata and a thumbnail, each atomically."""

import copy
import hashlib
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import safetensors.torch
import torch

from backend.model_files import FORMAT_VERSION, validate_metadata

THUMBNAIL_SIZE = 128
_TEMP_SUFFIX = ".tmp"   # write_atomic's temp file: ".NAME.<random>.tmp" beside NAME


def write_atomic(path, data):
    """Write bytes to ``path`` via a synced temp file in the same dir and os.replace. An OSError
    (a full disk, say) names ``path`` and leaves no temp file."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def partial_write_target(name):
    """The file name that ``name``, a temp file of :func:`write_atomic` (left only when the process
    was killed mid-write), was to become; None if ``name`` is not such a temp file."""
    if not (name.startswith(".") and name.endswith(_TEMP_SUFFIX)):
        return None
    target = name[1:-len(_TEMP_SUFFIX)].rpartition(".")[0]   # less the random part
    return target or None


def save_model(directory, name, net, metadata, thumbnail=None, half=False):
    """Save ``net`` (a StyleNet or SRNet) as model ``name`` in ``directory``; return the JSON path.

    ``metadata`` supplies at least what the files cannot tell (display_name, loss, vgg,
    recipe, data); ``format``, ``name``, ``kind``, ``scale``, ``architecture``,
    ``weights``, ``sha256`` and ``created`` are filled in. ``thumbnail`` is an optional
    PIL image, shrunk to 128 px. ``half``: store float tensors in float16 (half the size;
    they load as float32). Files are written atomically: weights, thumbnail, JSON last.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch = net.architecture()
    meta = copy.deepcopy(dict(metadata))
    meta.update(format=FORMAT_VERSION, name=name, kind=arch["type"], architecture=arch,
                scale=arch.get("scale", 1), weights=f"{name}.safetensors")
    meta.setdefault("display_name", name.replace("_", " ").title())
    meta.setdefault("vgg", None)
    meta.setdefault("loss", "style" if arch["type"] == "style" else "feat")
    meta.setdefault("recipe", {})
    meta.setdefault("data", {})
    meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    float_type = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", float_type if v.is_floating_point() else v.dtype).contiguous()
             for k, v in net.state_dict().items()}
    data = safetensors.torch.save(state)
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    validate_metadata(meta)
    write_atomic(directory / meta["weights"], data)
    if thumbnail is not None:
        thumb = thumbnail.convert("RGB")
        thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        buf = io.BytesIO()
        thumb.save(buf, format="PNG")
        write_atomic(directory / f"{name}.png", buf.getvalue())
    json_path = directory / f"{name}.json"
    write_atomic(json_path, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
    return json_path
