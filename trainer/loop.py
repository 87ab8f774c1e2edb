"""The training loop shared by style and super-resolution training.

It owns everything the two have in common: Adam and the learning-rate schedule, the steps,
checkpoints and ``--resume``, preview / loss-curve PNGs, stopping (``--time-limit``, ``stop``,
signals) and the final export; it uses :mod:`trainer.hardware` (device, precision, DDP via
``torchrun``), :mod:`trainer.progress` (tqdm and ``--progress-json`` lines),
:mod:`trainer.checkpoint` (run folder, checkpoints) and :mod:`trainer.init_weights` (``--init``).
A *task* (``train_style.StyleTask`` or ``train_sr.SRTask``) supplies the net, the loss, the
batches, the preview and the export.

Reproducibility: batches are a pure function of (seed, global sample number), and a
checkpoint holds model, optimizer, iteration and RNG states, so a resumed CPU run ends
bit-identical to an uninterrupted one.
"""

import json
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from trainer.checkpoint import (KEEP_CHECKPOINTS, LOSS_CURVE_FILE, PREVIEW_FILE, checkpoint_path, default_run_dir,
                                latest_checkpoint, load_checkpoint, prune_checkpoints, remove_partial_writes,
                                rng_state, save_checkpoint, set_rng_state)
from trainer.hardware import (Cluster, autocast_for, hardware_description, loader_threads, net_memory_format,
                              prepare_loss_network, resolve_precision)
from trainer.init_weights import load_init_weights
from trainer.plots import save_image, save_loss_curve
from trainer.prefetch import Prefetcher
from trainer.progress import Progress, ReaderGone, SpeedMeter, stop_requests


def learning_rate(iteration, lr, iterations, warmup=0, final=None):
    """The learning rate of step ``iteration`` (0-based): a linear ramp over the first ``warmup``
    steps, then ``lr``, or with ``final`` a cosine decay from ``lr`` to ``final`` at the last step."""
    if iteration < warmup:
        return lr * (iteration + 1) / warmup
    if final is None:
        return lr
    progress = min(1.0, (iteration - warmup) / max(1, iterations - 1 - warmup))
    return final + (lr - final) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_schedule(args):
    """The run's learning-rate schedule as a dict for config and recipe, or None for constant ``--lr``."""
    warmup, final = getattr(args, "warmup", 0), getattr(args, "lr_final", None)
    if warmup < 0 or (final is not None and final < 0):
        raise ValueError("--warmup and --lr-final must not be negative")
    if not warmup and final is None:
        return None
    # a decay is fixed to the run's length: a resumed run may not stretch it
    return {"warmup": warmup, "final": final, **({"iterations": args.iterations} if final is not None else {})}


def train_step(model, loss, optimizer, scaler, autocast, inputs, targets):
    """One optimisation step; returns the (total, parts) of the loss before the update."""
    with autocast:
        output = model(inputs)
        total, parts = loss(output, targets)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total.detach(), parts


def _check_resume_config(saved, current):
    different = {k: (saved.get(k), current.get(k)) for k in {**saved, **current} if saved.get(k) != current.get(k)}
    if different:
        lines = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in different.items())
        raise ValueError(f"cannot resume: the run's options changed ({lines})")


def _resume(args, run_dir, config, net, optimizer, scaler):
    """Load the checkpoint ``--resume`` names into net, optimizer, scaler and the RNGs;
    return (iteration, loss history, wall time so far, earlier command lines)."""
    path = latest_checkpoint(run_dir) if args.resume == "latest" else Path(args.resume)
    if path is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {run_dir}")
    ckpt = load_checkpoint(path)
    _check_resume_config(ckpt["config"], config)
    if ckpt["iteration"] > args.iterations:   # equal: trained, perhaps not exported; the export follows
        raise ValueError(f"{path} is already at iteration {ckpt['iteration']}; ask for more --iterations")
    net.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt["iteration"], ckpt["history"], ckpt["wall_time_s"], ckpt["commands"]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_training(args, make_task):
    """Train the net of ``make_task(args, device)`` as ``args`` say; return the exported
    model's JSON path (on rank 0; None on other ranks)."""
    cluster = Cluster(args.device)
    try:
        return _train(args, make_task, cluster)
    finally:
        cluster.close()


def _train(args, make_task, cluster):
    if args.iterations < 1 or args.batch < 1 or args.checkpoint_every < 1:
        raise ValueError("--iterations, --batch and --checkpoint-every must be at least 1")
    if getattr(args, "keep_checkpoints", 0) < 0:
        raise ValueError("--keep-checkpoints must be 0 (keep all) or more")
    if (getattr(args, "loader_threads", None) or 0) < 0:
        raise ValueError("--loader-threads must be 0 or more")
    device = cluster.device
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    task = make_task(args, device)
    measuring = getattr(args, "estimate", False)   # time a few steps, write nothing
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(task.name)
    if cluster.is_main and not measuring:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_writes(run_dir)
    layout = net_memory_format(device)
    net = task.net.to(device, memory_format=layout)
    if task.loss.loss_net is not None:
        prepare_loss_network(task.loss.loss_net, precision)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    init = load_init_weights(args.init, net, task.arch) if getattr(args, "init", None) else None
    schedule = lr_schedule(args)
    config = {**task.config, "batch": args.batch, "seed": args.seed, "world_size": cluster.world,
              **({"init": init["sha256"]} if init else {}),
              **({"lr_schedule": {**schedule, "lr": args.lr}} if schedule else {})}
    start, history, wall_before = 0, {"iteration": []}, 0.0
    command = getattr(args, "command_line", None) or "python API: " + json.dumps(vars(args), default=str)
    commands = [command]

    if args.resume and measuring:
        raise ValueError("--estimate measures a new run; leave out --resume")
    if args.resume:
        start, history, wall_before, earlier = _resume(args, run_dir, config, net, optimizer, scaler)
        commands = earlier + commands
    elif not measuring and latest_checkpoint(run_dir) is not None:
        raise ValueError(f"{run_dir} already holds checkpoints of a run ({latest_checkpoint(run_dir).name}); "
                         "pass --resume to continue it, or choose another --run-dir")

    model = net
    if cluster.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    if getattr(args, "compile", False):
        model = torch.compile(model)  # same weights (checkpoints and exports save ``net``)

    def checkpoint(iteration):
        if not cluster.is_main:
            return None
        path = save_checkpoint(checkpoint_path(run_dir, iteration), {
            "kind": task.kind, "iteration": iteration, "model": net.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
            "history": history, "config": config, "commands": commands,
            "wall_time_s": wall_before + time.monotonic() - started})
        prune_checkpoints(run_dir, getattr(args, "keep_checkpoints", KEEP_CHECKPOINTS))
        save_image(task.preview(net), run_dir / PREVIEW_FILE)
        save_loss_curve(history, run_dir / LOSS_CURVE_FILE)
        return path

    hardware = f"{hardware_description(device, cluster.world)}, {precision}"
    time_limit = getattr(args, "time_limit", None)
    progress = Progress(args.iterations, start, cluster.is_main, args.progress_json, hardware, time_limit)
    progress.emit(event="start", name=task.name, iterations=args.iterations, start=start,
                  run_dir=str(run_dir), device=str(device), precision=precision)
    progress.say(f"{'measuring' if measuring else 'training'} {task.name}: {args.iterations - start:,} iterations "
                 f"on {hardware}; the time it takes follows after the first steps")
    stop_requested = stop_requests(sys.stdin) if args.progress_json and not measuring else None
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main_thread else None
    started = time.monotonic()
    iteration = start
    deadline = started + time_limit if time_limit else None
    timed_out = stopped = False
    amp = autocast_for(precision, device)
    model.train()
    batches = Prefetcher(lambda i: task.batch((i * cluster.world + cluster.rank) * args.batch, args.batch),
                         start, loader_threads(args, device))
    try:
        while iteration < args.iterations and not (timed_out or stopped):
            inputs, targets = (t.to(device, memory_format=layout) for t in batches.take())
            if schedule:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(iteration, args.lr, args.iterations, schedule["warmup"],
                                                schedule["final"])
            total, parts = train_step(model, task.loss, optimizer, scaler, amp, inputs, targets)
            iteration += 1
            values = {"total": total.item(), **{k: v.item() for k, v in parts.items()}}
            history["iteration"].append(iteration)
            for k, v in values.items():
                history.setdefault(k, []).append(v)
            progress.update(iteration, values)
            if progress.reader_gone:
                raise ReaderGone("the process reading the progress lines went away")
            if measuring:
                if progress.speed.s_per_iteration is not None:
                    break
                continue
            if deadline is not None:
                timed_out = cluster.any_rank(time.monotonic() >= deadline)
            if stop_requested is not None:
                stopped = cluster.any_rank(stop_requested.is_set())
            if iteration % args.checkpoint_every == 0 or iteration == args.iterations or timed_out or stopped:
                checkpoint(iteration)
    except KeyboardInterrupt:
        progress.close()
        path = checkpoint(iteration) if iteration > start and not measuring else None
        progress.emit(event="cancelled", iteration=iteration, checkpoint=str(path) if path else None)
        raise
    finally:
        batches.close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    progress.close()
    if measuring and progress.speed.s_per_iteration is None and cluster.is_main:
        raise ValueError(f"--estimate needs at least {SpeedMeter.ESTIMATE_STEPS + 1} iterations to time")
    if measuring or not cluster.is_main:
        return None
    wall_time = wall_before + time.monotonic() - started
    recipe = {"command": commands[-1] if len(commands) == 1 else " && ".join(commands),
              "iterations": iteration,
              **({"planned_iterations": args.iterations} if iteration < args.iterations else {}),
              **({"stopped_by_time_limit": True} if timed_out else {}), **({"stopped_early": True} if stopped else {}),
              "batch": args.batch * cluster.world, "lr": args.lr,
              "seed": args.seed, "precision": precision, "world_size": cluster.world,
              "hardware": hardware_description(device, cluster.world), "wall_time_s": round(wall_time, 1),
              "final_losses": {k: v[-1] for k, v in history.items() if k != "iteration"},
              **({"init": init} if init else {}), **({"lr_schedule": schedule} if schedule else {})}
    json_path = task.export(net, recipe, args.out)
    progress.emit(event="done", model=task.name, path=str(json_path), wall_time_s=round(wall_time, 1))
    return json_path
