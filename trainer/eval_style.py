"""The paper's Figure 5: the style-transfer objective (Eq. 5) reached by a feed-forward net, by the
content image itself and by the Gatys et al. optimisation baseline after a number of L-BFGS
iterations; a Markdown table and a log-scale plot."""

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from trainer import data


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
    from trainer.hardware import hardware_description

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
