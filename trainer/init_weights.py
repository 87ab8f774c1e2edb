"""``--init``: a new run that starts from a trained model's weights, perhaps with more residual
blocks, wider layers (style nets) or another mirrored border."""

from pathlib import Path

import torch

from backend.nets import StyleNet, build_net


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


def wider(source, target):
    """Whether style-net architecture ``target`` is ``source`` with no fewer channels in any of the
    five :attr:`backend.nets.StyleNet.widths` and at least one more (blocks and border aside)."""
    if source.get("type") != "style" or target.get("type") != "style":
        return False
    old, new = (build_net({**arch, "blocks": 0, "border": 0}).widths for arch in (source, target))
    return all(n >= o for o, n in zip(old, new)) and old != new


def _style_convs(net):
    """A StyleNet's convolutions in order, each with the normalisation after it (None for the
    last) and the indices of :attr:`StyleNet.widths` its input and output channels are counted
    by (None: RGB). A residual block's two convolutions read and write the stream (index 2)."""
    enc, dec = net.encoder, net.decoder
    layers = [(enc[0][1], enc[1], None, 0), (enc[3][1], enc[4], 0, 1), (enc[6][1], enc[7], 1, 2)]
    for block in net.residuals:
        layers += [(block.body[0][1], block.body[1], 2, 2), (block.body[3][1], block.body[4], 2, 2)]
    return layers + [(dec[0][1][1], dec[1], 2, 3), (dec[3][1][1], dec[4], 3, 4), (dec[6][1], None, 4, None)]


def copy_and_widen(net, source, seed=0):
    """Copy ``source`` (a :class:`backend.nets.StyleNet`) into ``net``, the same net with more
    channels, so that ``net`` computes exactly what ``source`` does (Chen et al., Net2Net, 2016).
    A new channel ``j`` of a layer copies the old channel ``j mod width``, with its normalisation;
    the next layer splits each old input channel's weights among its copies in random shares
    that sum to one, so the copies get different gradients and learn apart."""
    if not (isinstance(net, StyleNet) and isinstance(source, StyleNet) and len(net.residuals) == len(source.residuals)):
        raise ValueError("only a style net with as many residual blocks can be widened")
    generator = torch.Generator().manual_seed(seed)
    copies = [torch.arange(new) % old for old, new in zip(source.widths, net.widths)]
    rgb = torch.arange(3)
    with torch.no_grad():
        for (conv, norm, inputs, outputs), (old_conv, old_norm, _, _) in zip(_style_convs(net), _style_convs(source)):
            rows = rgb if outputs is None else copies[outputs]
            columns = rgb if inputs is None else copies[inputs]
            shares = torch.rand(len(rows), len(columns), generator=generator) + 0.5
            totals = torch.zeros(len(rows), old_conv.weight.shape[1]).index_add_(1, columns, shares)
            conv.weight.copy_(old_conv.weight[rows][:, columns] * (shares / totals[:, columns])[..., None, None])
            conv.bias.copy_(old_conv.bias[rows])
            if norm is not None:
                norm.weight.copy_(old_norm.weight[rows])
                norm.bias.copy_(old_norm.bias[rows])


def load_init_weights(spec, net, architecture):
    """``--init``: copy the weights of model ``spec`` (a name in the model search path or a
    model .json path) into ``net``, whose ``architecture`` must be the model's, or the model's
    with more residual blocks (``--blocks``; see :func:`copy_and_deepen`), more channels (a style
    net's ``--widths``; :func:`copy_and_widen`), or both, or another ``--border``. Returns the
    record kept in the new model's recipe: the model's name, weights hash and own recipe."""
    from backend.model_store import ModelStore

    path = Path(spec)
    if path.suffix == ".json":  # only that folder: the search path's other models need not be loaded
        store, name = ModelStore(path.parent, include_bundled=False, include_user=False), path.stem
    else:
        store, name = ModelStore(), spec
    info = store.get(name)
    source_arch, source = info.metadata["architecture"], store.load(info)
    if wider(source_arch, architecture) and architecture["blocks"] >= source_arch["blocks"]:
        wide = build_net({**architecture, "blocks": source_arch["blocks"]})   # widen first, then deepen
        copy_and_widen(wide, source)
        source_arch, source = wide.architecture(), wide
    extra = deeper_by(source_arch, architecture)
    if extra is None:
        raise ValueError(f"--init {spec}: its architecture {info.metadata['architecture']} is neither the one "
                         f"being trained, {architecture}, nor that with fewer residual blocks or (a style net) "
                         "fewer channels")
    copy_and_deepen(net, source)
    return {"model": info.name, "sha256": info.metadata["sha256"], "recipe": info.metadata["recipe"]}
