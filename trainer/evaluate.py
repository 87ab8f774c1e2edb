"""The ``brushwork eval`` commands: ``eval sr`` (:mod:`trainer.eval_sr`, the standard
super-resolution benchmark) and ``eval style`` (:mod:`trainer.eval_style`, the paper's Figure 5),
each writing a Markdown report and its pictures into a run folder."""

import time
from pathlib import Path

from trainer import data
from trainer.eval_sr import evaluate_sr, sr_grid, sr_table
from trainer.eval_style import evaluate_style, lbfgs_provenance, style_plot, style_table


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


def _safe_name(text):
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _out_dir(args, kind, label):
    """``--out-dir``, else a new run folder ``eval-KIND-LABEL-DATE-TIME`` beside the training runs (created)."""
    from trainer.checkpoint import default_run_dir

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


def run_style(args):
    """``brushwork eval style``: the objective of a style model, of the content images and of the
    L-BFGS baseline (the paper's Figure 5); prints and writes a Markdown table and a plot."""
    from tqdm import tqdm

    from backend.engine import Engine, resolve_device
    from trainer.gatys import build_objective, model_objective
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
        objective, style = model_objective(info.metadata, device, args.style_image, args.style_size, args.vgg_weights)
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

