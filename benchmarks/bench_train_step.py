"""Where a style-training step's time goes: crop making, the step itself, torch.compile.

Prints, for the style net with ``--blocks`` residual blocks at ``--batch`` 256-px crops in
the device's fastest precision: the time to cut one batch of crops (after the image cache is
full), one training step (mean of 20 after 3 warm-up steps) eager and, with ``--compile``,
compiled, and with ``--profile`` the top GPU (or CPU) kernels of 5 steps.

    .venv/bin/python benchmarks/bench_train_step.py [--batch 16] [--blocks 8] [--compile] [--profile]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.nets import build_net  # noqa: E402
from trainer.data import CropSampler, find_images, load_image  # noqa: E402
from trainer.losses import LossWeights, PerceptualLoss  # noqa: E402
from trainer.hardware import autocast_for, net_memory_format, prepare_loss_network, resolve_precision  # noqa: E402
from trainer.loop import train_step  # noqa: E402
from trainer.vgg import LossNetwork  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(model, loss, amp, batch, device, steps=20, warmup=3):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            start = time.perf_counter()
        train_step(model, loss, optimizer, scaler, amp, batch, batch)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(net)")
    parser.add_argument("--profile", action="store_true", help="print the top kernels of 5 eager steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = resolve_precision("auto", device)
    layout = net_memory_format(device)

    sampler = CropSampler(find_images(SHARED / "data/train/sun_hays80"), 256, zoom=2, flip=True)
    for number in range(len(sampler.paths)):  # fill the image cache
        sampler.sample(number)
    start = time.perf_counter()
    batches = [sampler.batch(i * args.batch, args.batch) for i in range(5)]
    print(f"{device} ({precision}), batch {args.batch}, {args.blocks} blocks")
    print(f"cutting a batch of crops: {(time.perf_counter() - start) / 5 * 1000:.0f} ms")

    style = load_image(SHARED / "data/styles/wave.jpg", max_side=256).to(device)
    loss_net = LossNetwork("caffe", SHARED / "weights/vgg16_caffe_relu4_3.pth").to(device)
    loss = PerceptualLoss(loss_net, LossWeights.defaults("caffe", "style"), style_image=style)
    prepare_loss_network(loss_net, precision)
    amp = autocast_for(precision, device)
    batch = batches[0].to(device, memory_format=layout)
    net = build_net({"type": "style", "channels": 32, "blocks": args.blocks}).to(device, memory_format=layout)
    seconds = seconds_per_step(net, loss, amp, batch, device)
    print(f"eager step: {seconds * 1000:.1f} ms, {args.batch / seconds:.0f} images/s")
    if args.profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profile:
            seconds_per_step(net, loss, amp, batch, device, steps=5, warmup=0)
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(profile.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60))
    if args.compile:
        start = time.perf_counter()
        seconds = seconds_per_step(torch.compile(net), loss, amp, batch, device)
        print(f"compiled step: {seconds * 1000:.1f} ms, {args.batch / seconds:.0f} images/s "
              f"(compiling and 23 steps took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
