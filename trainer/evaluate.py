"""The paper's evaluations: ``brushwork eval sr`` and ``brushwork eval style``.

- ``eval sr``: the standard super-resolution benchmark protocol (HR cropped to a multiple
  of the scale, plain Pillow bicubic downsampling, PSNR/SSIM on Y with ``scale`` pixels
  shaved, see :mod:`trainer.metrics`), a model against bicubic upsampling; a Markdown table
  and a PNG grid of zoomed crops per data set.
- ``eval style``: the paper's Figure 5: the style-transfer objective (Eq. 5) reached by a
  feed-forward net, by the content image itself and by the Gatys et al. optimisation
  baseline after a number of L-BFGS iterations; a Markdown table and a log-scale plot.

Plain functions (:func:`evaluate_sr`, :func:`evaluate_style`) serve report scripts too.
"""

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from trainer import data, metrics

GRID_CROP = 96        # HR pixels on a side of each zoomed crop
GRID_ZOOM = 2         # nearest-neighbour magnification of the crops
GRID_LABEL_HEIGHT = 28


def image_paths(sources):
    """Image files named by ``sources``: files, or directories searched with trainer.data.find_images."""
    paths = []
    for source in sources:
        source = Path(source)
        if source.is_file():
            paths.append(source)
        else:
            paths += data.find_images(source)
    return paths


# ----------------------------------------------------------------------------- eval sr

def crop_to_multiple(image, scale):
    """Crop the right and bottom edges so that both sides are multiples of ``scale``."""
    width, height = image.size
    width, height = width - width % scale, height - height % scale
    if width < scale or height < scale:
        raise ValueError(f"image of {image.size} is smaller than the scale {scale}")
    return image.crop((0, 0, width, height))


def degrade(hr, scale):
    """The benchmark's low-resolution input: plain Pillow bicubic downsampling, no blur."""
    return hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC)


def _sr_runner(model):
    """A function LR PIL image -> SR PIL image for an nn.Module (NCHW [0,1] in and out) or a
    callable taking and returning float32 HxWx3 arrays in [0, 1] (e.g. an Engine's upscale)."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")

        def run(lr):
            model.eval()
            with torch.inference_mode():
                return data.to_image(model(data.to_tensor(lr)[None].to(device))[0])
        return run

    def run(lr):
        out = model(np.asarray(lr, dtype=np.float32) / 255.0)
        return Image.fromarray(metrics.to_uint8_array(np.asarray(out, dtype=np.float32)))
    return run


def evaluate_sr(model_or_callable, hr_paths, scale, keep_images=False):
    """Evaluate ``model_or_callable`` (None: bicubic only) on the HR images at ``hr_paths``.

    Returns one dict per image: ``image`` (file stem), ``bicubic_psnr``, ``bicubic_ssim``,
    ``bicubic_grid`` and, with a model, ``model_psnr``, ``model_ssim``, ``model_grid``; with
    ``keep_images`` also ``images``, a dict of PIL images ``lr``, ``bicubic``, ``model`` (if
    any) and ``hr``. ``*_grid`` is the upscale's checkerboard power (:func:`metrics.grid_energy`
    at the scale's period) over the HR image's own: about 1 or less is clean.
    """
    run = None if model_or_callable is None else _sr_runner(model_or_callable)
    rows = []
    for path in hr_paths:
        hr = crop_to_multiple(data.open_rgb(path), scale)
        lr = degrade(hr, scale)
        images = {"lr": lr, "bicubic": lr.resize(hr.size, Image.BICUBIC), "hr": hr}
        if run is not None:
            images["model"] = run(lr)
            if images["model"].size != hr.size:
                raise ValueError(f"the model turned {lr.size} into {images['model'].size}, "
                                 f"expected {hr.size} (is it a x{scale} model?)")
        row = {"image": Path(path).stem}
        hr_array = np.asarray(hr)
        hr_grid = metrics.grid_energy(hr_array, scale, shave=scale)
        for method in ("bicubic", "model"):
            if method in images:
                out = np.asarray(images[method])
                row[f"{method}_psnr"] = metrics.psnr(out, hr_array, shave=scale)
                row[f"{method}_ssim"] = metrics.ssim(out, hr_array, shave=scale)
                row[f"{method}_grid"] = metrics.grid_energy(out, scale, shave=scale) / max(hr_grid, 1e-12)
        if keep_images:
            row["images"] = images
        rows.append(row)
    return rows


def mean_row(rows):
    """The per-column mean of ``evaluate_sr`` rows (image ``mean``)."""
    keys = [k for k in rows[0] if k.endswith(("_psnr", "_ssim", "_grid"))]
    return {"image": "mean", **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def sr_table(rows, model_label="model"):
    """Markdown table of ``evaluate_sr`` rows followed by their mean."""
    methods = ["bicubic"] + (["model"] if "model_psnr" in rows[0] else [])
    labels = {"bicubic": "bicubic", "model": model_label}
    head = ["image"] + [f"{labels[m]} {q}" for m in methods for q in ("PSNR (dB)", "SSIM", "grid")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows + [mean_row(rows)]:
        cells = ["**mean**" if row["image"] == "mean" else row["image"]]
        for m in methods:
            cells += [f"{row[f'{m}_psnr']:.2f}", f"{row[f'{m}_ssim']:.4f}", f"{row[f'{m}_grid']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_box(hr, size):
    """The ``size`` x ``size`` box of ``hr`` with the most luma variance (the most telling crop)."""
    y = metrics.rgb_to_y(np.asarray(hr))
    height, width = y.shape
    size = min(size, width, height)
    step = max(size // 4, 1)
    best, best_box = -1.0, (0, 0, size, size)
    for top in range(0, height - size + 1, step):
        for left in range(0, width - size + 1, step):
            variance = float(y[top:top + size, left:left + size].var())
            if variance > best:
                best, best_box = variance, (left, top, left + size, top + size)
    return best_box


def sr_grid(rows, scale, model_label="model"):
    """A comparison grid of ``evaluate_sr(..., keep_images=True)`` rows: one row per image with
    the HR image (crop marked in red), then the zoomed crop of the LR input (nearest-upscaled),
    bicubic, the model (if any) and HR, each labelled with its PSNR/SSIM."""
    methods = ["lr", "bicubic"] + (["model"] if "model" in rows[0]["images"] else []) + ["hr"]
    titles = {"lr": f"LR input (x{scale} nearest)", "bicubic": "bicubic", "model": model_label, "hr": "HR"}
    cell = GRID_CROP * GRID_ZOOM
    grid = Image.new("RGB", (cell * (len(methods) + 1), (cell + GRID_LABEL_HEIGHT) * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        images = row["images"]
        hr = images["hr"]
        box = detail_box(hr, GRID_CROP)
        top = r * (cell + GRID_LABEL_HEIGHT)
        overview = hr.copy()
        ImageDraw.Draw(overview).rectangle(box, outline=(255, 0, 0), width=max(2, hr.width // 150))
        overview.thumbnail((cell, cell))
        grid.paste(overview, ((cell - overview.width) // 2, top + (cell - overview.height) // 2))
        draw.text((4, top + cell + 2), row["image"], fill="black")
        for c, method in enumerate(methods, start=1):
            source = images[method]
            if method == "lr":
                source = source.resize(hr.size, Image.NEAREST)
            crop = source.crop(box)
            crop = crop.resize((crop.width * GRID_ZOOM, crop.height * GRID_ZOOM), Image.NEAREST)
            grid.paste(crop, (c * cell, top))
            label = titles[method]
            if f"{method}_psnr" in row:
                label += f"\n{row[f'{method}_psnr']:.2f} dB / {row[f'{method}_ssim']:.4f}"
            draw.text((c * cell + 4, top + cell + 2), label, fill="black")
    return grid


# ----------------------------------------------------------------------------- eval style

def square_content(path, size):
    """A content image as the paper evaluates it: shorter side scaled to ``size``, centre
    ``size`` x ``size`` crop; 1x3xHxW tensor in [0, 1]."""
    image = data.center_crop(data.resize_shorter_side(data.open_rgb(path), size), size)
    return data.to_tensor(image)[None]


def _style_runner(net):
    """A function 1x3xHxW tensor -> stylised tensor for an nn.Module, or a callable taking and
    returning float32 HxWx3 arrays in [0, 1] (e.g. an Engine's stylize)."""
    if isinstance(net, torch.nn.Module):
        def run(content):
            net.eval()
            with torch.inference_mode():
                return net(content.to(next(net.parameters()).device)).float()
        return run

    def run(content):
        out = net(content[0].permute(1, 2, 0).cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).permute(2, 0, 1)[None]
    return run


def evaluate_style(net, objective, content_paths, sizes=(256, 512), iterations=(50, 100, 200, 300, 500),
                   init="noise", seed=0, progress=None, baselines=None, objective_id=None):
    """The paper's Figure 5 measurements for the style objective ``objective`` (a PerceptualLoss).

    For each size and content image: the objective of the feed-forward output of ``net`` (an
    nn.Module, a callable on HxWx3 arrays, or None), of the content image itself, and of one
    projected L-BFGS run (:func:`trainer.gatys.optimize`) after each count in ``iterations``.
    Returns one dict per (size, image): ``size``, ``image``, ``content``, ``network`` (None
    without a net), ``lbfgs`` ({iterations: objective}), ``history`` (every iteration), and
    ``terms``: {"net" (with a net), "L-BFGS N" (the largest count): ``objective.terms``}.
    ``progress(done, total, objective)`` is passed on to each L-BFGS run.

    ``baselines`` (a :class:`trainer.baselines.BaselineStore`, with ``objective_id`` from
    :func:`trainer.baselines.objective_digest`): L-BFGS runs found there are not run again,
    new ones are added. Each row's ``lbfgs_device`` says where its run was computed, and
    ``lbfgs_stored`` whether it came from the store.
    """
    from trainer.baselines import digest
    from trainer.gatys import optimize
    from trainer.loop import hardware_description

    iterations = sorted(set(int(n) for n in iterations))
    if not iterations or iterations[0] < 1:
        raise ValueError(f"iteration counts must be >= 1, got {iterations}")
    device = next(objective.loss_net.parameters()).device
    here = hardware_description(device, 1)
    if baselines is not None and objective_id is None:
        raise ValueError("stored baselines need the objective's digest (objective_id)")
    run = None if net is None else _style_runner(net)
    rows = []
    for size in sizes:
        for path in content_paths:
            content = square_content(path, size)
            key = None if baselines is None else digest(objective_id, content, init, seed, iterations[-1])
            content = content.to(device)
            row = {"size": size, "image": Path(path).stem, "network": None, "terms": {}}
            with torch.no_grad():
                row["content"] = float(objective(content, content)[0])
                if run is not None:
                    row["terms"]["net"] = objective.terms(run(content).to(device), content)
                    row["network"] = sum(row["terms"]["net"].values())
            stored = baselines.get(key) if baselines is not None else None
            if stored is not None:
                history, terms, row["lbfgs_device"] = stored["history"], stored["terms"], stored["device"]
                if progress is not None:
                    for done in range(1, len(history)):
                        progress(done, len(history) - 1, history[done])
            else:
                image, history = optimize(content, objective, iterations[-1], init, seed, progress)
                terms, row["lbfgs_device"] = objective.terms(image, content), here
                if baselines is not None:
                    baselines.put(key, history, terms, here)
            row["lbfgs_stored"] = stored is not None
            row["lbfgs"] = {n: history[n] for n in iterations}
            row["history"] = history
            row["terms"][f"L-BFGS {iterations[-1]}"] = terms
            rows.append(row)
    return rows


def lbfgs_provenance(rows, baselines_path=None):
    """One sentence: where the L-BFGS runs of ``rows`` were computed, and how many came from
    the baselines file."""
    devices = ", ".join(f"{n} on {d}" for d, n in Counter(row["lbfgs_device"] for row in rows).items())
    stored = sum(row["lbfgs_stored"] for row in rows)
    return (f"L-BFGS runs: {devices}" + (f"; {stored} of {len(rows)} read from {baselines_path}" if stored else "")
            + ".")


def _mean(values):
    return float(np.mean(values))


def style_summary(rows):
    """Per size: mean objective of the content image, the net and the L-BFGS counts, the mean
    L-BFGS curve, and the first iteration at which that curve gets down to the net's level."""
    summary = {}
    for size in dict.fromkeys(row["size"] for row in rows):
        group = [row for row in rows if row["size"] == size]
        curve = np.mean([row["history"] for row in group], axis=0)
        network = None if group[0]["network"] is None else _mean([row["network"] for row in group])
        reached = None if network is None else next((i for i, v in enumerate(curve) if v <= network), None)
        summary[size] = {"content": _mean([row["content"] for row in group]), "network": network,
                         "lbfgs": {n: _mean([row["lbfgs"][n] for row in group]) for n in group[0]["lbfgs"]},
                         "curve": curve.tolist(), "lbfgs_matches_network_at": reached}
    return summary


def style_table(rows, net_label="feed-forward net"):
    """Markdown table of ``evaluate_style`` rows: one line per image and size, and the mean per size."""
    counts = list(rows[0]["lbfgs"])
    head = ["size", "image", "content image", net_label] + [f"L-BFGS {n}" for n in counts]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(size, image, content, network, lbfgs):
        values = [content, network] + [lbfgs[n] for n in counts]
        return "| " + " | ".join([str(size), image] + ["n/a" if v is None else f"{v:.4g}" for v in values]) + " |"

    summary = style_summary(rows)
    for size, mean in summary.items():
        lines += [cells(size, row["image"], row["content"], row["network"], row["lbfgs"])
                  for row in rows if row["size"] == size]
        lines.append(cells(size, "**mean**", mean["content"], mean["network"], mean["lbfgs"]))
    notes = []
    for size, mean in summary.items():
        if mean["network"] is not None:
            at = mean["lbfgs_matches_network_at"]
            where = f"after {at} L-BFGS iterations" if at is not None else \
                f"not within {len(mean['curve']) - 1} L-BFGS iterations"
            notes.append(f"- {size} px: the mean L-BFGS objective reaches the net's level {where}.")
    return "\n".join(lines + ([""] + notes if notes else []) + ["", terms_table(rows)])


def terms_table(rows):
    """Markdown table of the objective's weighted terms (style split by VGG layer), mean over the
    images of each size, for the net's output and the final L-BFGS image."""
    outputs = list(rows[0]["terms"])
    names = list(rows[0]["terms"][outputs[0]])
    lines = ["Weighted terms, mean over the images:", "",
             "| size | output | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for size in dict.fromkeys(row["size"] for row in rows):
        group = [row for row in rows if row["size"] == size]
        for output in outputs:
            means = [_mean([row["terms"][output][name] for row in group]) for name in names]
            lines.append(f"| {size} | {output} | " + " | ".join(f"{v:.3g}" for v in means) + " |")
    return "\n".join(lines)


def style_plot(rows, path, title="style objective (Eq. 5)"):
    """The paper's Figure 5: mean objective against L-BFGS iterations (log scale), one line per
    size, with the feed-forward net's level as a dashed horizontal line of the same colour."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    for index, (size, mean) in enumerate(style_summary(rows).items()):
        colour = f"C{index}"
        steps = np.arange(len(mean["curve"]))
        ax.plot(steps[1:], mean["curve"][1:], color=colour, label=f"L-BFGS, {size} px")
        ax.plot(list(mean["lbfgs"]), list(mean["lbfgs"].values()), "o", color=colour, markersize=4)
        if mean["network"] is not None:
            ax.axhline(mean["network"], color=colour, linestyle="--", label=f"feed-forward net, {size} px")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("L-BFGS iterations")
    ax.set_ylabel("objective (mean over content images)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")


# ----------------------------------------------------------------------------- CLI

def _safe_name(text):
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _out_dir(args, kind, label):
    """``--out-dir``, else a new run folder ``eval-KIND-LABEL-DATE-TIME`` beside the training runs (created)."""
    from trainer.loop import default_run_dir

    out_dir = Path(args.out_dir) if args.out_dir else default_run_dir(
        f"eval-{kind}-{_safe_name(label)}-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _engine_upscaler(model_name, scale, models_dirs, device):
    """(callable for evaluate_sr, ModelInfo) running model ``model_name`` through the backend Engine."""
    from backend.engine import Engine
    from backend.model_store import ModelStore

    store = ModelStore(models_dirs or ())
    info = store.get(model_name)
    if info.kind != "sr":
        raise ValueError(f"model {model_name!r} is a {info.kind} model, not a super-resolution model")
    if scale is not None and scale != info.scale:
        raise ValueError(f"model {model_name!r} upscales x{info.scale}, not x{scale}")
    engine = Engine(store, device=device, precision="fp32")

    def upscale(rgb):
        return engine.upscale(rgb, None, model=model_name, scale=info.scale)[0]
    return upscale, info


def run_sr(args):
    """``brushwork eval sr``: PSNR/SSIM on Y of an SR model and of bicubic upsampling (standard
    benchmark protocol); prints and writes a Markdown table and a crop grid per data set."""
    if args.scale is not None and args.scale < 2:
        raise ValueError(f"--scale must be at least 2, not {args.scale}")
    bicubic_only = args.bicubic_only or args.model in (None, "bicubic")
    if bicubic_only:
        model, label, scale = None, "bicubic", args.scale or 4
    else:
        model, info = _engine_upscaler(args.model, args.scale, args.models, args.device)
        label, scale = info.name, info.scale
    out_dir = _out_dir(args, "sr", label)
    title = f"# Super-resolution x{scale}: " + ("bicubic baseline" if bicubic_only else f"{label} vs bicubic")
    report = [title, "",
              f"Protocol: HR cropped to a multiple of {scale}; LR = Pillow bicubic downsampling (no blur); "
              f"PSNR/SSIM on Y (BT.601) with {scale} border pixels shaved; SSIM 11x11 Gaussian (sigma 1.5).", ""]
    for source in args.data:
        name = Path(source).name or str(source)
        rows = evaluate_sr(model, image_paths([source]), scale, keep_images=True)
        table = sr_table(rows, label)
        print(f"\n## {name}\n{table}")
        grid_path = out_dir / f"sr_x{scale}_{_safe_name(label)}_{_safe_name(name)}.png"
        sr_grid(rows, scale, label).save(grid_path)
        report += [f"## {name}", "", table, "", f"![{name} crops]({grid_path.name})", ""]
    table_path = out_dir / f"sr_x{scale}_{_safe_name(label)}.md"
    table_path.write_text("\n".join(report), encoding="utf-8")
    print(f"\nwrote {table_path} and {len(args.data)} grid(s) in {out_dir}")
    return 0


def _model_objective(meta, args, device):
    """The objective a style model was trained on, and the style image (1x3xHxW) it was built
    from: the model's VGG flavour, loss weights and style image (``--style-image`` /
    ``--style-size`` / ``--vgg-weights`` override the metadata)."""
    from trainer.gatys import build_objective
    from trainer.options import STYLE_SIZE
    from trainer.losses import LossWeights

    recipe, sources = meta.get("recipe", {}), meta.get("data", {})
    flavour = meta.get("vgg") or recipe.get("vgg") or "caffe"
    weights = recipe.get("loss_weights")
    weights = LossWeights(**weights) if weights else LossWeights.defaults(flavour, "style")
    style_path = args.style_image or sources.get("style_image")
    if not style_path or not Path(style_path).is_file():
        raise ValueError(f"the style image {style_path!r} is not available here; pass --style-image")
    style_size = args.style_size or recipe.get("style_size") or STYLE_SIZE
    vgg_weights = args.vgg_weights or recipe.get("vgg_weights")
    style = data.load_image(style_path, max_side=style_size)
    return build_objective(style, flavour, vgg_weights, weights, device), style


def run_style(args):
    """``brushwork eval style``: the objective of a style model, of the content images and of the
    L-BFGS baseline (the paper's Figure 5); prints and writes a Markdown table and a plot."""
    from tqdm import tqdm

    from backend.engine import Engine, resolve_device
    from trainer.gatys import build_objective
    from trainer.options import STYLE_SIZE

    device = resolve_device(args.device)
    if min(args.sizes) < 16 or min(args.iterations) < 1:
        raise ValueError("--sizes must be >= 16 and --iterations >= 1")
    paths = image_paths(args.content)
    if args.model:
        from backend.model_store import ModelStore

        store = ModelStore(args.models or ())
        info = store.get(args.model)
        if info.kind != "style":
            raise ValueError(f"model {args.model!r} is a {info.kind} model, not a style model")
        objective, style = _model_objective(info.metadata, args, device)
        engine = Engine(store, device=device, precision="fp32")

        def net(rgb):
            return engine.stylize(rgb, None, model=info.name)[0]
        label = info.name
    elif args.style_image:
        from trainer.losses import LossWeights

        style = data.load_image(args.style_image, max_side=args.style_size or STYLE_SIZE)
        objective = build_objective(style, args.vgg, args.vgg_weights, LossWeights.defaults(args.vgg, "style"), device)
        net, label = None, Path(args.style_image).stem
    else:
        raise ValueError("give --model NAME (or --style-image S to measure only the L-BFGS baseline)")
    total = len(args.sizes) * len(paths) * max(args.iterations)
    with tqdm(total=total, desc="L-BFGS", unit="it") as bar:
        def progress(done, _total, value):
            bar.set_postfix(objective=f"{value:.4g}", refresh=False)
            bar.update(1)
        baselines = None
        if args.baselines:
            from trainer.baselines import BaselineStore, objective_digest

            baselines = BaselineStore(args.baselines)
        rows = evaluate_style(net, objective, paths, args.sizes, args.iterations, args.init, args.seed, progress,
                              baselines, objective_digest(style, objective) if baselines else None)
    out_dir = _out_dir(args, "style", label)
    table = style_table(rows, label if net is not None else "net")
    plot_path = out_dir / f"style_{_safe_name(label)}.png"
    style_plot(rows, plot_path, title=f"{label}: style objective (Eq. 5) vs L-BFGS")
    table_path = out_dir / f"style_{_safe_name(label)}.md"
    weights = objective.weights
    table_path.write_text("\n".join([
        f"# Style objective: {label}", "",
        f"Eq. 5 with VGG-16 '{objective.loss_net.flavour}', weights content {weights.content:g}, "
        f"style {weights.style:g}, TV {weights.tv:g}; content images: shorter side scaled to the size, "
        f"centre square crop; L-BFGS (projected to [0, 1]) from {args.init} (seed {args.seed}).", "",
        lbfgs_provenance(rows, args.baselines), "",
        table, "", f"![objective vs L-BFGS iterations]({plot_path.name})", ""]), encoding="utf-8")
    print(table)
    print(f"\nwrote {table_path} and {plot_path}")
    return 0

