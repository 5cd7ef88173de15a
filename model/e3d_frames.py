"""E3D computed frame-major with time-stacked 2-D convolutions, end to end (export only).

``conv3d_as_2d`` rewrites each Conv3d on its own: it turns the ``[N, C, T, H, W]`` activation
time-major, stacks frames t-1, t, t+1 on the channels, runs one 2-D convolution over all
frames and turns the result back, so every convolution pays a transpose in and out (and the
strip-local ones two more), which ONNX Runtime cannot all cancel. This module keeps the whole
backbone in the frame-major ``[N, T, C, H, W]`` layout instead, where a frame's channels are
contiguous and the stacking is a concatenation on the channel axis:

    stacked[t] = concat(x[t - 1], x[t], x[t + 1])          (zero frames outside the walk)
    conv3d(x, w)[t] = conv2d(stacked[t], w reordered to [O, 3C, 3, 3])

The global and the strip-local convolution of a GLConv layer read the same stacked tensor
(the local one after folding its strips into the batch); the length mask multiplies per
frame; the (1, 2, 2) pooling is a 2-D max pool over the frames. Only the local strips and the
final hand-over to the ``[N, C, T, h, w]`` layout the rest of the network reads transpose.

Exact up to float summation order; tested against :class:`E3D` in ``tests/model``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.model.e3d import E3D, layer_convs
from gaitid.model.layers.conv3d_as_2d import stack_frames, time_stacked_weight


def _stacked_weight(conv: nn.Conv3d) -> nn.Parameter:
    return nn.Parameter(time_stacked_weight(conv), requires_grad=False)


class FrameMajorE3D(nn.Module):
    """Drop-in replacement of an :class:`E3D` for export: same input, same output."""

    def __init__(self, backbone: E3D) -> None:
        super().__init__()
        self.pool_after = backbone.pool_after
        self.global_weights = nn.ParameterList()
        self.local_weights = nn.ParameterList()
        self.strips: list[int] = []
        for convs in layer_convs(backbone):
            self.global_weights.append(_stacked_weight(convs.global_conv))
            if convs.local_conv is not None:
                self.local_weights.append(_stacked_weight(convs.local_conv))
            self.strips.append(convs.strips)

    def forward(self, silhouettes: Tensor, mask: Tensor) -> Tensor:
        n, t = silhouettes.shape[:2]
        frame_mask = mask.reshape(n, t, 1, 1, 1).to(silhouettes.dtype)
        x = silhouettes.unsqueeze(2) * frame_mask  # [N, T, 1, H, W]
        locals_seen = 0
        for index, weight in enumerate(self.global_weights):
            stacked = stack_frames(x)
            c3, h, w = stacked.shape[2:]
            out = F.leaky_relu(F.conv2d(stacked.reshape(n * t, c3, h, w), weight, padding=1))
            channels = out.shape[1]
            if strips := self.strips[index]:
                local_weight = self.local_weights[locals_seen]
                locals_seen += 1
                # [N, T, 3C, S, h/S, W] -> [N, T, S, 3C, h/S, W]: strips into the batch
                parts = stacked.reshape(n, t, c3, strips, h // strips, w).transpose(2, 3)
                parts = parts.reshape(n * t * strips, c3, h // strips, w)
                local = F.leaky_relu(F.conv2d(parts, local_weight, padding=1))
                local = local.reshape(n, t, strips, channels, h // strips, w).transpose(2, 3)
                out = out + local.reshape(n * t, channels, h, w)
            if index in self.pool_after:
                out = F.max_pool2d(out, 2)
                h, w = h // 2, w // 2
            x = out.reshape(n, t, channels, h, w) * frame_mask
        return x.transpose(1, 2)  # [N, C, T, h, w], what HPP reads
