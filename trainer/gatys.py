"""The optimisation baseline: Gatys et al.'s style transfer as Johnson et al. run it (Section 4.1).

The image itself is optimised with L-BFGS to minimise the same objective the feed-forward
nets are trained on (Eq. 5: weighted feature, style and total-variation losses, from
:class:`trainer.losses.PerceptualLoss`). As in the paper, the image is initialised with
white noise (uniform in [0, 1]; the paper's Figure 5 comparison starts from noise) and the
optimisation is *projected*: the image is clamped to the valid range [0, 1] after every
L-BFGS iteration. ``--init content`` starts from the content image instead.

``brushwork stylize IN --optimize --style-image S -o OUT`` runs it from the command line.
"""

import os
from pathlib import Path

import torch

from backend.protocol import BadRequest, Cancelled
from trainer import data
from trainer.losses import LossWeights, PerceptualLoss
from trainer.options import LBFGS_INITS, LBFGS_ITERATIONS, STYLE_SIZE
from trainer.train_style import loss_weights
from trainer.vgg import LossNetwork


def initial_image(content, init="noise", seed=0):
    """The starting image: uniform white noise in [0, 1] (``seed``ed) or a copy of ``content``."""
    if init == "content":
        return content.detach().clone(memory_format=torch.contiguous_format)
    if init == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content)
    raise ValueError(f"unknown init {init!r}; expected one of {LBFGS_INITS}")


def optimize(content, objective, iterations=LBFGS_ITERATIONS, init="noise", seed=0,
             progress=None, is_cancelled=None):
    """Minimise ``objective(image, content)`` (a PerceptualLoss) over the image with projected L-BFGS.

    ``content``: 1x3xHxW in [0, 1] on the objective's device. Returns ``(image, history)``:
    the final image (1x3xHxW in [0, 1]) and the objective after 0, 1, ..., ``iterations``
    iterations (``iterations + 1`` floats). ``progress(done, total, objective)`` is called
    after each iteration; ``is_cancelled()`` is polled before each and raises Cancelled.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, not {iterations}")
    image = initial_image(content, init, seed).requires_grad_(True)
    # One L-BFGS iteration per step() call (PyTorch keeps the memory between calls), without a
    # line search, as the Lua optim.lbfgs the paper's code used.
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=100)

    def closure():
        optimizer.zero_grad()
        total, _ = objective(image, content)
        if not torch.isfinite(total):
            raise FloatingPointError(f"the objective became {float(total)}; try smaller loss weights")
        total.backward()
        return total

    history = []
    for done in range(iterations):
        if is_cancelled is not None and is_cancelled():
            raise Cancelled("optimisation cancelled")
        before = image.detach().clone()
        history.append(float(optimizer.step(closure).detach()))   # the objective where this step started
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        _record_projected_step(optimizer.state[image], image.detach() - before)
        if progress is not None:
            progress(done + 1, iterations, history[-1])
    with torch.no_grad():
        history.append(float(objective(image, content)[0]))
    return image.detach(), history


def _record_projected_step(state, step):
    """Make L-BFGS remember the step actually taken (after the projection), not the one it proposed.

    PyTorch's LBFGS forms its next curvature pair from ``s = state["d"] * state["t"]`` and the
    gradient change; after clamping, the true step differs, and an inconsistent pair derails the
    optimisation (objective jumps by orders of magnitude or stalls)."""
    t = state.get("t")
    if t:
        state["d"] = step.flatten() / t


def build_objective(style_image, flavour="caffe", vgg_weights=None, weights=None, device="cpu"):
    """The paper's style-transfer objective for ``style_image`` (1x3xHxW in [0, 1]):
    a PerceptualLoss on a frozen VGG-16 with ``weights`` (LossWeights; default: the
    training defaults for ``flavour``)."""
    loss_net = LossNetwork(flavour, weights=vgg_weights).to(device)
    weights = weights or LossWeights.defaults(flavour, "style")
    return PerceptualLoss(loss_net, weights, style_image=style_image.to(device))


def style_image_of(meta, style_image=None):
    """The path of the style image a style model (metadata ``meta``) was trained on: ``style_image``
    if given, else the metadata's path as it stands, from the checkout (the bundled models' paths are
    relative to it) or in ``$BRUSHWORK_SHARED/data/styles``. ValueError if none is a file."""
    if style_image:
        candidates = [Path(style_image)]
    else:
        recorded = meta.get("data", {}).get("style_image")
        if not recorded:
            raise ValueError("the model's metadata names no style image; pass --style-image")
        shared = os.environ.get("BRUSHWORK_SHARED")
        candidates = [Path(recorded), Path(__file__).resolve().parents[1] / recorded,
                      *([Path(shared) / "data" / "styles" / Path(recorded).name] if shared else [])]
    for path in candidates:
        if path.is_file():
            return path
    raise ValueError(f"the style image {str(candidates[0])!r} is not available here; pass --style-image")


def model_vgg(meta, vgg_weights=None):
    """(flavour, weights path or None) of the VGG-16 a style model (metadata ``meta``) was trained
    with, unless ``vgg_weights`` says otherwise."""
    recipe = meta.get("recipe", {})
    return meta.get("vgg") or recipe.get("vgg") or "caffe", vgg_weights or recipe.get("vgg_weights")


def model_objective(meta, device="cpu", style_image=None, style_size=None, vgg_weights=None):
    """The objective a style model (metadata ``meta``) was trained on, and the style image (1x3xHxW)
    it was built from: the model's VGG (:func:`model_vgg`), loss weights, style image and style size,
    unless ``style_image`` / ``style_size`` / ``vgg_weights`` say otherwise."""
    recipe = meta.get("recipe", {})
    flavour, vgg_weights = model_vgg(meta, vgg_weights)
    weights = recipe.get("loss_weights")
    weights = LossWeights(**weights) if weights else LossWeights.defaults(flavour, "style")
    style = data.load_image(style_image_of(meta, style_image),
                            max_side=style_size or recipe.get("style_size") or STYLE_SIZE)
    return build_objective(style, flavour, vgg_weights, weights, device), style


def run(args):
    """``brushwork stylize IN --optimize --style-image S [-o OUT]``: optimise one image, with a progress bar.

    Also uses the ``stylize`` options ``inputs`` (one file), ``output`` (default ``IN-gatys.png``
    beside the input or in ``out_dir``), ``device`` and ``quiet``. Ctrl-C stops it."""
    from tqdm import tqdm

    from backend.engine import resolve_device

    inputs = list(args.inputs)
    if len(inputs) != 1:
        raise BadRequest(f"--optimize takes one input image, not {len(inputs)}")
    if not args.style_image:
        raise BadRequest("--optimize needs --style-image S")
    if args.iterations < 1 or args.size < 16 or args.style_size < 16:
        raise BadRequest("--iterations must be >= 1 and --size / --style-size >= 16")
    source = Path(inputs[0])
    output = Path(args.output) if args.output else \
        Path(args.out_dir or source.parent) / f"{source.stem}-gatys.png"
    device = resolve_device(args.device)
    try:
        content = data.load_image(source, max_side=args.size).to(device)
        style = data.load_image(args.style_image, max_side=args.style_size)
        objective = build_objective(style, args.vgg, args.vgg_weights, loss_weights(args, "style"), device)
        with tqdm(total=args.iterations, desc="L-BFGS", unit="it", disable=args.quiet) as bar:
            def progress(done, total, value):
                bar.set_postfix(objective=f"{value:.4g}", refresh=False)
                bar.update(1)
            image, history = optimize(content, objective, args.iterations, args.init, args.seed, progress)
        output.parent.mkdir(parents=True, exist_ok=True)
        data.to_image(image[0]).save(output)
    except (OSError, ValueError, FloatingPointError) as exc:
        raise BadRequest(str(exc)) from None
    print(f"objective {history[0]:.4g} -> {history[-1]:.4g} after {args.iterations} L-BFGS iterations; "
          f"wrote {output}")
    return 0
