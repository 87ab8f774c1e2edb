"""Inference-only rewrites of the nets: the same function, computed with less work.

``UpsampleConv`` (x2 nearest-neighbour upsampling, reflection pad 1, 3x3 conv) becomes
a sub-pixel convolution: each of the four output phases of a pixel only ever sees a
2x2 neighbourhood of the low-resolution input, so four 2x2 kernels on the small image
replace one 3x3 kernel on the 4x larger one (2.25x fewer multiply-adds, no large
padded copy). Reflection padding of the upsampled image equals replicate padding of the
small one, so borders match too. Bilinear stages are left as they are.

:func:`with_float32_output` keeps what sets the output's precision in float32 when the rest
of a net runs in bf16 or fp16: the last convolution and the output mapping after it or, in a
residual SR net, the bicubic upscale of the input and the sum with the detail (the detail itself is
small, so its own bf16 rounding is far below a 16-bit level where the image is smooth). A bf16 output
has 8 significant bits (steps of 1/256 to 1/128 near white), which would band a 16-bit image.
"""

import torch
import torch.nn.functional as F
from torch import nn

from backend.nets import ConvLayer, SRNet, StyleNet, UpsampleConv

_STRIP_BYTES = 1 << 25   # input rows :class:`StripConv` copies at a time (32 MiB)
_WHOLE_BYTES = 1 << 27   # inputs up to this size (128 MiB) are padded whole, without strips


class SubpixelUpsampleConv(nn.Module):
    """Drop-in, exact replacement of a :class:`backend.nets.UpsampleConv` with a 3x3 kernel."""

    def __init__(self, module):
        super().__init__()
        conv = module[1][1]
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1):
            raise ValueError("only 3x3 stride-1 upsampling convolutions can be rewritten")
        w = conv.weight.detach()
        # Along one axis, phase 0 reads rows (Y-1, Y) with taps (w0, w1 + w2);
        # phase 1 reads (Y, Y+1) with taps (w0 + w1, w2).
        rows = [torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),
                torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2)]
        kernels = []
        for a in (0, 1):
            for b in (0, 1):
                r = rows[a]
                kernels.append(torch.stack([r[..., 0], r[..., 1] + r[..., 2]], 3) if b == 0
                               else torch.stack([r[..., 0] + r[..., 1], r[..., 2]], 3))
        self.out_channels = conv.out_channels
        self.weight = nn.Parameter(torch.cat(kernels, 0), requires_grad=False)   # (4*out, in, 2, 2)
        self.bias = nn.Parameter(conv.bias.detach().repeat(4), requires_grad=False)

    def forward(self, x):
        height, width = x.shape[2:]
        phases = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.weight, self.bias)
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        out = torch.empty((x.shape[0], self.out_channels, 2 * height, 2 * width), dtype=phases.dtype,
                          device=x.device, memory_format=layout)
        c = self.out_channels
        for i, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            out[:, :, a::2, b::2] = phases[:, i * c:(i + 1) * c, a:a + height, b:b + width]
        return out


def with_subpixel_upsampling(net):
    """Replace (in place) every nearest-neighbour UpsampleConv of ``net`` by a SubpixelUpsampleConv;
    return ``net``."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, UpsampleConv) and child[0].mode == "nearest":
                setattr(module, name, SubpixelUpsampleConv(child))
    return net


def _reflected(index, size):
    """Row indices ``index`` of a tensor with ``size`` rows, reflected at its ends as ReflectionPad2d does."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


class StripConv(nn.Module):
    """Drop-in, exact replacement of a :class:`backend.nets.ConvLayer` (reflection pad, then
    convolution) that computes the output in strips of rows. Each strip reads its rows of the
    input, reflected where they leave it, so the padded copy of the whole input is never made:
    on a whole image or a whole tensor that copy is as large as the input itself. Inputs of up to
    ``_WHOLE_BYTES`` are padded whole all the same: there the copy is affordable, and the strips'
    extra copies cost more than the convolution of a narrow layer (half the time of a 16-channel
    net at 1024**2 on a 2-core CPU; docs/lite_nets_log.md)."""

    def __init__(self, layer):
        super().__init__()
        self.pad, self.conv = layer[0].padding[0], layer[1]

    def forward(self, x):
        pad, conv = self.pad, self.conv
        (kernel, _), (stride, _) = conv.kernel_size, conv.stride
        height, width = x.shape[-2:]
        rows_out = (height + 2 * pad - kernel) // stride + 1
        cols_out = (width + 2 * pad - kernel) // stride + 1
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        if x.numel() * x.element_size() <= _WHOLE_BYTES:
            return conv(F.pad(x, (pad, pad, pad, pad), mode="reflect").contiguous(memory_format=layout))
        out = torch.empty((x.shape[0], conv.out_channels, rows_out, cols_out), dtype=x.dtype, device=x.device,
                          memory_format=layout)
        step = max(1, _STRIP_BYTES // max(1, x[0, :, :1].numel() * x.element_size() * stride))
        for first in range(0, rows_out, step):
            last = min(rows_out, first + step)
            rows = torch.arange(first * stride - pad, (last - 1) * stride + kernel - pad, device=x.device)
            strip = F.pad(x.index_select(2, _reflected(rows, height)), (pad, pad, 0, 0), mode="reflect")
            out[:, :, first:last] = conv(strip.contiguous(memory_format=layout))
        return out


def with_strip_convolutions(net):
    """Replace (in place) every ConvLayer of ``net`` by a StripConv; return ``net``."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, ConvLayer):
                setattr(module, name, StripConv(child))
    return net


class Float32Layer(nn.Module):
    """``layer`` (its parameters made float32) computed in float32 on an input of any precision."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer.float()

    def forward(self, x):
        return self.layer(x.float())


class InputCast(nn.Module):
    """``layer`` applied to its input converted to the dtype of ``layer``'s parameters."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x.to(next(self.layer.parameters()).dtype))


def with_float32_output(net):
    """Make (in place) a StyleNet or SRNet, already in its working precision, take a float32
    input and compute its last convolution (and what follows) in float32; return ``net``."""
    if isinstance(net, StyleNet):
        net.encoder[0] = InputCast(net.encoder[0])
        net.decoder[-1] = Float32Layer(net.decoder[-1])
    elif isinstance(net, SRNet):
        net.head[0] = InputCast(net.head[0])
        if not net.residual:   # a residual net's detail is added to the float32 bicubic: that sets the levels
            net.tail = Float32Layer(net.tail)
    else:
        raise TypeError(f"expected a StyleNet or SRNet, not {type(net).__name__}")
    return net
