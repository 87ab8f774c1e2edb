"""Style-training speed on this machine: fp32 against the fastest precision.

Trains the paper's style net (256 x 256 crops, batch 4, feature + style + TV losses, Caffe
VGG-16) for ``--iterations`` steps in each precision from the same seed and prints:

- seconds per iteration (median after 2 warm-up steps) for fp32 and for the fastest mode
  (their steps alternate, so load from other processes slows both alike),
- the relative difference of their total losses over those iterations,
- FLOPs of one forward + backward step (torch.utils.flop_counter) and the fraction of this
  device's peak FLOP rate reached, peak measured with a large matmul in the same dtype.

    .venv/bin/python benchmarks/bench_train.py [--iterations 50] [--size 256] [--batch 4]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.cli import build_parser  # noqa: E402
from trainer.hardware import autocast_for, cpu_has_native_bf16, net_memory_format, prepare_loss_network  # noqa: E402
from trainer.loop import train_step  # noqa: E402
from trainer.train_style import StyleTask  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_task(size, batch, device):
    args = build_parser().parse_args([
        "train", "style", "--style", str(SHARED / "data/styles/starry_night.jpg"),
        "--content", str(SHARED / "data/train/sun_hays80"), "--size", str(size), "--style-size", str(size),
        "--batch", str(batch), "--vgg-weights", str(SHARED / "weights/vgg16_caffe_relu4_3.pth")])
    torch.manual_seed(0)
    task = StyleTask(args, device)
    task.net.to(device, memory_format=net_memory_format(device))
    prepare_loss_network(task.loss.loss_net, "fp32")
    return task


def batches(task, count, batch, device):
    """The first ``count`` training batches, decoded once so image loading is not timed."""
    return [tuple(t.to(device, memory_format=net_memory_format(device)) for t in task.batch(i * batch, batch))
            for i in range(count)]


class Trainer:
    """The paper's style net and loss from seed 0, stepped in one precision."""

    def __init__(self, precision, size, batch, device):
        self.precision = precision
        self.task = make_task(size, batch, device)
        prepare_loss_network(self.task.loss.loss_net, precision)
        self.optimizer = torch.optim.Adam(self.task.net.parameters(), lr=1e-3)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.autocast = autocast_for(precision, device)
        self.times, self.losses = [], []

    def step(self, inputs, targets):
        start = time.perf_counter()
        total, _ = train_step(self.task.net, self.task.loss, self.optimizer, self.scaler, self.autocast,
                              inputs, targets)
        self.losses.append(total.item())
        self.times.append(time.perf_counter() - start)

    def seconds_per_step(self):
        """Median step time, leaving out 2 warm-up steps."""
        return statistics.median(self.times[2:] if len(self.times) > 4 else self.times)


def train_interleaved(modes, data, size, batch, device):
    """Step every mode on the same batches, alternating, so that load from other processes
    on a shared machine slows all modes alike."""
    trainers = {mode: Trainer(mode, size, batch, device) for mode in modes}
    for i, (inputs, targets) in enumerate(data):
        for trainer in trainers.values():
            trainer.step(inputs, targets)
        print(f"  step {i + 1}/{len(data)}: " + ", ".join(
            f"{m} {t.times[-1]:.2f} s loss {t.losses[-1]:.4g}" for m, t in trainers.items()), file=sys.stderr)
    return {mode: (t.seconds_per_step(), t.times, t.losses) for mode, t in trainers.items()}


def step_flops(data, size, batch, device):
    """FLOPs of one training step's forward and backward passes (fp32 count)."""
    task = make_task(size, batch, device)
    inputs, targets = data[0]
    with FlopCounterMode(display=False) as counter:
        total, _ = task.loss(task.net(inputs), targets)
        total.backward()
    return counter.get_total_flops()


def peak_flops(dtype, device, n=3072, repeats=20):
    """Sustained FLOP/s of an n x n matmul in ``dtype`` (best of ``repeats``)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        fast = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        fast = "bf16" if cpu_has_native_bf16() else "fp32"
    print(f"device {device} ({torch.get_num_threads()} threads), {args.size}x{args.size}, batch {args.batch}, "
          f"{args.iterations} iterations, fastest mode {fast}")
    data = batches(make_task(args.size, args.batch, device), args.iterations, args.batch, device)
    flops = step_flops(data, args.size, args.batch, device)
    results = train_interleaved(dict.fromkeys(["fp32", fast]), data, args.size, args.batch, device)
    print(f"FLOPs per training step (forward + backward): {flops / 1e9:.0f} GFLOP")
    for mode, (seconds, times, _) in results.items():
        peak = peak_flops(DTYPES[mode], device)
        print(f"{mode:5s}: {seconds:.2f} s/iteration (median; best {min(times):.2f}) = "
              f"{flops / seconds / 1e9:.0f} GFLOP/s; "
              f"peak ({mode} 3072^3 matmul) {peak / 1e9:.0f} GFLOP/s -> {flops / seconds / peak:.0%} of peak")
    if fast != "fp32":
        ref, other = results["fp32"][2], results[fast][2]
        rel = [abs(a - b) / abs(a) for a, b in zip(ref, other)]
        print(f"loss difference {fast} vs fp32 over {len(rel)} iterations: mean {statistics.mean(rel):.2%}, "
              f"max {max(rel):.2%} (step 1, same weights: {rel[0]:.3%}); "
              f"final loss fp32 {ref[-1]:.4g}, {fast} {other[-1]:.4g}")
        print(f"speed-up {results['fp32'][0] / results[fast][0]:.2f}x")


if __name__ == "__main__":
    main()
