"""The training loop shared by style and super-resolution training.

It owns everything the two have in common: device and precision, DDP (``torchrun``),
Adam, progress (tqdm and ``--progress-json`` lines), checkpoints and ``--resume``,
preview / loss-curve PNGs and the final export. A *task* (``train_style.StyleTask`` or
``train_sr.SRTask``) supplies the net, the loss, the batches, the preview and the export.

Reproducibility: batches are a pure function of (seed, global sample number), and a
checkpoint holds model, optimizer, iteration and RNG states, so a resumed CPU run ends
bit-identical to an uninterrupted one.
"""

import json
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from backend.protocol import describe_duration
from trainer.checkpoint import (KEEP_CHECKPOINTS, checkpoint_path, latest_checkpoint, load_checkpoint,
                                prune_checkpoints, remove_partial_checkpoints, rng_state, save_checkpoint,
                                set_rng_state)
from trainer.plots import save_image, save_loss_curve
from trainer.prefetch import Prefetcher

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Cluster:
    """This process's place in a (possibly single-process) DDP run, and its device."""

    def __init__(self, device="auto"):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and self.world > 1:
            device = f"cuda:{local_rank}"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("--device cuda asked for, but PyTorch sees no CUDA GPU")
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self):
        return self.rank == 0

    def any_rank(self, flag):
        """True if ``flag`` is true on any rank (so all ranks stop together)."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def resolve_precision(precision, device):
    """Turn 'auto' into fp32/bf16/fp16 for ``device``; reject fp16 on CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32 on a CPU")
    return precision


def cpu_has_native_bf16():
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where bf16
    autocast is faster than fp32 (elsewhere it is emulated and slower)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def autocast_for(precision, device):
    """The autocast context for a resolved ``precision`` (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=_AMP_DTYPES.get(precision), enabled=precision in _AMP_DTYPES)


def net_memory_format(device):
    """Layout for the trained net and its batches: channels-last on GPUs; NCHW on CPUs, where
    InstanceNorm returns NCHW output and each following channels-last conv would convert
    it back (those copies were a fifth of a CPU step). The frozen VGG is channels-last on both."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def loader_threads(args, device):
    """``--loader-threads``, or by default 4 on a GPU (crops would otherwise hold it up) and
    none on a CPU (the crops are a small part of a CPU step, and the cores are busy)."""
    threads = getattr(args, "loader_threads", None)
    return threads if threads is not None else (4 if device.type == "cuda" else 0)


def prepare_loss_network(loss_net, precision):
    """Channels-last, and under bf16 its frozen weights cast to bf16 once instead of by
    autocast in every step (float16 keeps float32 weights for its loss scaling)."""
    loss_net.to(memory_format=torch.channels_last)
    if precision == "bf16":
        loss_net.features.to(torch.bfloat16)  # the convs; preprocessing constants stay float32


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


def hardware_description(device, world):
    """A short human description of what trained the model."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name() + f" ({torch.get_num_threads()} threads)"
    return f"{world} x {name}" if world > 1 else name


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_run_dir(name):
    from backend.model_store import user_models_dir
    return user_models_dir().parent / "runs" / name


class ReaderGone(KeyboardInterrupt):
    """The process reading the ``--progress-json`` lines (the daemon) went away: the run stops as if
    interrupted, with a checkpoint, so that it can be resumed."""


class SpeedMeter:
    """Seconds per iteration on this device, timed over the steps after the first (which
    allocates memory and warms caches up): ready after ESTIMATE_STEPS steps and ESTIMATE_S seconds."""

    ESTIMATE_STEPS = 3
    ESTIMATE_S = 1.0

    def __init__(self):
        self.first_done = None
        self.steps = 0
        self.s_per_iteration = None

    def step_done(self, now):
        """Record a finished step; True when this one made the estimate ready."""
        if self.first_done is None:
            self.first_done = now
            return False
        self.steps += 1
        elapsed = now - self.first_done
        if self.s_per_iteration is None and self.steps >= self.ESTIMATE_STEPS and elapsed >= self.ESTIMATE_S:
            self.s_per_iteration = elapsed / self.steps
            return True
        return False


def estimate_text(s_per_iteration, iterations, done, hardware, time_limit=None):
    """What a run of ``iterations`` costs here, and how to stop it sooner, for the person waiting."""
    remaining = (iterations - done) * s_per_iteration
    text = (f"measured on {hardware}: {s_per_iteration:.3g} s per iteration, so {iterations:,} iterations take "
            f"about {describe_duration(iterations * s_per_iteration)}")
    if done:
        text += f" ({describe_duration(remaining)} from iteration {done:,})"
    if time_limit and time_limit < remaining:
        return text + (f"; --time-limit stops it after {describe_duration(time_limit)}, at about "
                       f"{done + int(time_limit / s_per_iteration):,} iterations, and saves the model")
    if remaining > 3600:
        text += (f". To stop sooner and keep what it has learnt, add --time-limit SECONDS (--time-limit 3600: "
                 f"about {int(3600 / s_per_iteration):,} iterations in an hour)")
    return text


class Progress:
    """tqdm bar on stderr (rank 0) plus, with ``json_lines``, JSON progress lines on stdout; once
    the speed is measured, the estimated time on stderr (and as an ``estimate`` JSON line)."""

    def __init__(self, total, start, enabled, json_lines, hardware, time_limit=None):
        self.total, self.start, self.json_lines, self.enabled = total, start, json_lines and enabled, enabled
        self.hardware, self.time_limit = hardware, time_limit
        self.bar = tqdm(total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True)
        self.started = time.monotonic()
        self.last_json = 0.0
        self.reader_gone = False
        self.speed = SpeedMeter()

    def update(self, iteration, parts):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()}, refresh=False)
        self.bar.update(1)
        now = time.monotonic()
        if self.speed.step_done(now):
            self.announce_estimate()
        if self.json_lines and (now - self.last_json >= 0.5 or iteration == self.total):
            rate = (iteration - self.start) / max(now - self.started, 1e-9)
            self.emit(event="progress", iteration=iteration, total=self.total, losses=parts,
                      s_per_iteration=1 / rate if rate else None,
                      eta_s=(self.total - iteration) / rate if rate else None)
            self.last_json = now

    def announce_estimate(self):
        s = self.speed.s_per_iteration
        self.say(estimate_text(s, self.total, self.start, self.hardware, self.time_limit))
        self.emit(event="estimate", s_per_iteration=s, iterations=self.total, start=self.start,
                  seconds=(self.total - self.start) * s, hardware=self.hardware)

    def say(self, text):
        """A line for the person at the terminal (stderr, above the bar)."""
        if self.enabled:
            self.bar.write(text, file=sys.stderr)

    def emit(self, **fields):
        if self.json_lines:
            try:
                print(json.dumps(fields), flush=True)
            except BrokenPipeError:
                self.json_lines, self.reader_gone = False, True
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())   # what is still buffered must not fail at exit
                os.close(devnull)

    def close(self):
        self.bar.close()


def stop_requests(stream):
    """An Event set when ``stream`` (the trainer's stdin under ``--progress-json``) gives the line
    ``stop``: how an editor's training is stopped early, keeping what it has learnt."""
    requested = threading.Event()

    def watch():
        try:
            for line in stream:
                if line.strip() == "stop":
                    requested.set()
                    return
        except (OSError, ValueError):   # no usable stdin (closed, or captured by a test runner)
            return
    if stream is not None:
        threading.Thread(target=watch, name="brushwork-stop-requests", daemon=True).start()
    return requested


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
        remove_partial_checkpoints(run_dir)
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
        save_image(task.preview(net), run_dir / "preview.png")
        save_loss_curve(history, run_dir / "loss.png")
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
