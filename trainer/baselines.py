"""L-BFGS baseline runs kept in a JSON file (``eval style --baselines FILE``).

The Gatys et al. baseline of Figure 5 depends only on the objective (VGG weights, loss
weights, style image), the content image, its size and the L-BFGS settings, not on the net
being measured. Stored once, on whatever device, it lets later evaluations of other nets
for the same style skip the optimisation, which takes most of an evaluation's time.
"""

import datetime
import hashlib
import json
import os
from pathlib import Path

import torch

FORMAT = 1


def digest(*parts):
    """A hex SHA-256 of ``parts``: tensors by their float32 values and shape, anything else as JSON."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            values = part.detach().to("cpu", torch.float32).contiguous()
            h.update(json.dumps(list(values.shape)).encode())
            h.update(values.numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()


def objective_digest(style_image, objective):
    """What identifies a style objective across devices: its VGG flavour and weights, loss
    weights and the style image it was built from (1x3xHxW in [0, 1])."""
    vgg = objective.loss_net
    return digest(vgg.flavour, objective.weights.as_dict(), style_image,
                  *(tensor for _, tensor in sorted(vgg.state_dict().items())))


class BaselineStore:
    """The runs in the JSON file ``path`` (created on the first :meth:`put`), by key: each a
    dict with ``history`` (the objective after 0..N iterations), ``terms`` (the final image's
    weighted terms), ``device`` and ``created``. One writer per file at a time."""

    def __init__(self, path):
        self.path = Path(path)
        self.runs = {}
        if self.path.exists():
            try:
                stored = json.loads(self.path.read_text(encoding="utf-8"))
                if stored.get("format") != FORMAT or not isinstance(stored.get("runs"), dict):
                    raise ValueError(f"not a format-{FORMAT} baselines file")
                for key, run in stored["runs"].items():
                    if not (isinstance(run.get("history"), list) and isinstance(run.get("terms"), dict)
                            and isinstance(run.get("device"), str)):
                        raise ValueError(f"run {key[:12]}... lacks its history, terms or device")
            except (OSError, ValueError, AttributeError) as exc:
                raise ValueError(f"cannot read the baselines file {self.path}: {exc}") from None
            self.runs = stored["runs"]

    def get(self, key):
        """The stored run for ``key``, or None."""
        return self.runs.get(key)

    def put(self, key, history, terms, device):
        """Store a run and rewrite the file (atomically)."""
        self.runs[key] = {"history": list(history), "terms": terms, "device": device,
                          "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"format": FORMAT, "runs": self.runs}), encoding="utf-8")
        os.replace(temporary, self.path)
