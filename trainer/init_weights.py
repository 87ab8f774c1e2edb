"""``--init``: a new run that starts from a trained model's weights, perhaps with more residual
blocks or another mirrored border."""

from pathlib import Path

import torch


def deeper_by(source, target):
    """How many residual blocks architecture ``target`` adds to ``source`` (0 when as many);
    None when ``target`` is not ``source`` with extra blocks. The mirrored ``border`` may
    differ: it changes how the net is run, not its weights."""
    def layers(arch):
        return {k: v for k, v in arch.items() if k not in ("blocks", "border")}

    extra = target.get("blocks", 0) - source.get("blocks", 0)
    return extra if layers(source) == layers(target) and extra >= 0 else None


def copy_and_deepen(net, source):
    """Copy ``source``'s weights into ``net``, the same net with more residual blocks. The
    extra blocks (the last ones) start as the identity, their last normalisation scaled to
    zero: ``net`` computes exactly what ``source`` does, and training adds what they learn."""
    kept = len(source.residuals)
    missing, unexpected = net.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not key.startswith("residuals.") or int(key.split(".")[1]) < kept for key in missing):
        raise ValueError(f"cannot deepen: unexpected weights {unexpected}, missing {missing}")
    with torch.no_grad():
        for block in net.residuals[kept:]:
            block.body[-1].weight.zero_()
            block.body[-1].bias.zero_()


def load_init_weights(spec, net, architecture):
    """``--init``: copy the weights of model ``spec`` (a name in the model search path or a
    model .json path) into ``net``, whose ``architecture`` must be the model's, or the model's
    with more residual blocks (``--blocks``; see :func:`copy_and_deepen`) or another
    ``--border``. Returns the record
    kept in the new model's recipe: the model's name, weights hash and own recipe."""
    from backend.model_store import ModelStore

    path = Path(spec)
    if path.suffix == ".json":  # only that folder: the search path's other models need not be loaded
        store, name = ModelStore(path.parent, include_bundled=False, include_user=False), path.stem
    else:
        store, name = ModelStore(), spec
    info = store.get(name)
    extra = deeper_by(info.metadata["architecture"], architecture)
    if extra is None:
        raise ValueError(f"--init {spec}: its architecture {info.metadata['architecture']} is neither the one "
                         f"being trained, {architecture}, nor that with fewer residual blocks")
    copy_and_deepen(net, store.load(info))
    return {"model": info.name, "sha256": info.metadata["sha256"], "recipe": info.metadata["recipe"]}
