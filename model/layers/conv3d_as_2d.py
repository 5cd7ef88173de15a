"""A 3x3x3 convolution computed as a 2D convolution over time-stacked channels.

ONNX Runtime's CPU kernels run 2D convolutions through its blocked (NCHWc) path but 3D ones
through a generic im2col path; on the E3D backbone, where 3D convs are ~80 % of the work, that
made the exported graph no faster than eager PyTorch. The identity used here:

    conv3d(x, w)[t] = sum_{dt in -1,0,1} conv2d(x[t + dt], w[:, :, dt + 1])
                    = conv2d(concat_dt(x[t + dt]) over channels, w reordered to [O, 3*C, 3, 3])

with zero frames outside the walk (the Conv3d's own temporal zero padding). It is exact up to
float summation order, so it is swapped in only at export time (`model.export`), keeping the
trained module and its checkpoints unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TimeStackedConv3d(nn.Module):
    """Drop-in replacement of a bias-free ``Conv3d(C, O, 3, padding=1)`` (stride 1)."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        self.weight = nn.Parameter(time_stacked_weight(conv), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, h, w = x.shape
        # time-major first, on C channels (not 3C). The transpose back at the end then meets
        # the next layer's transpose here with only element-wise ops between them, and ONNX
        # Runtime's transpose optimiser cancels the pair, so consecutive convolutions stay in
        # this layout.
        stacked = stack_frames(x.transpose(1, 2))
        # [N*T, 3C, H, W] -> conv -> [N, T, O, H, W] -> [N, O, T, H, W]
        y = F.conv2d(stacked.reshape(n * t, 3 * c, h, w), self.weight, padding=1)
        return y.reshape(n, t, -1, h, w).transpose(1, 2)


def time_stacked_weight(conv: nn.Conv3d) -> Tensor:
    """``[O, C, kt, kh, kw] -> [O, kt * C, kh, kw]``: time-major channel blocks, the order in
    which :func:`stack_frames` lays out its input (a copy; refuses what it cannot rewrite)."""
    check_replaceable(conv)
    out_channels, in_channels = conv.weight.shape[:2]
    weight = conv.weight.detach().permute(0, 2, 1, 3, 4)
    return weight.reshape(out_channels, 3 * in_channels, 3, 3).clone()


def stack_frames(x: Tensor) -> Tensor:
    """``[N, T, C, H, W] -> [N, T, 3C, H, W]``: frames t-1, t, t+1 side by side on the
    channels, contiguous as built (zero frames at the ends: the Conv3d's temporal padding)."""
    t = x.shape[1]
    padded = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 1))
    return torch.cat([padded[:, 0:t], padded[:, 1 : t + 1], padded[:, 2 : t + 2]], dim=2)


def check_replaceable(conv: nn.Module) -> None:
    """Raise ``ValueError`` unless :func:`is_replaceable` holds for ``conv``."""
    if not is_replaceable(conv):
        raise ValueError(f"cannot rewrite {conv}: needs kernel 3, stride 1, padding 1, no bias")


def is_replaceable(conv: nn.Module) -> bool:
    """Whether ``conv`` is a Conv3d that :class:`TimeStackedConv3d` reproduces exactly."""
    return (
        isinstance(conv, nn.Conv3d)
        and conv.kernel_size == (3, 3, 3)
        and conv.stride == (1, 1, 1)
        and conv.padding == (1, 1, 1)
        and conv.dilation == (1, 1, 1)
        and conv.groups == 1
        and conv.bias is None
        and conv.padding_mode == "zeros"
    )


def stack_time_in_conv3d(module: nn.Module) -> int:
    """Replace every replaceable Conv3d below ``module`` in place; return how many."""
    replaced = 0
    for name, child in module.named_children():
        if is_replaceable(child):
            setattr(module, name, TimeStackedConv3d(child))  # type: ignore[arg-type]
            replaced += 1
        else:
            replaced += stack_time_in_conv3d(child)
    return replaced
