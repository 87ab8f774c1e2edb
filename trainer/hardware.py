"""Where a run trains: its place in a DDP run and its device, the precision and memory layout
it trains in there, and a short description of that hardware for the model's recipe."""

import os
import platform
from pathlib import Path

import torch
import torch.distributed as dist

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
    it back, a copy per layer. The frozen VGG is channels-last on both."""
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
