"""E3D, the 3D-convolutional backbone of LMGCS (paper III-A), in the GaitGL (GLFE) style.

Four 3D conv layers (32/64/128/128 channels on CASIA-B), kernel 3, LeakyReLU after each. Layer
0 is a plain conv; layers 1-3 are global-plus-local convs (GLConv of GaitGL, ref. [14]): one
conv over the whole map plus one conv applied separately to each of ``local_strips``
horizontal strips (the strips are folded into the batch, so it is one conv call), summed after
their activations. A (1, 2, 2) spatial max pool follows the layers named in ``pool_after``.

Time is NOT reduced (no GaitGL "LTA" stride-3 conv): the paper keeps ``F in R^{n x c x h x w}``
with all n frames, LMFE windows of s = 1, 3, 5 are counted in frames, and a walk of 1 or 2
frames must still give an embedding. The price is about 3x the backbone FLOPs of GaitGL at the
same T (see ``gaitid model-info``).

Variable length: zero padding pads time in every conv, and after every layer the padded frames
are set back to zero, so the frames past the end of a walk are zero in a batch exactly as the
conv's own padding is zero when the walk runs alone. In eager mode the masks are skipped when
no walk is padded (every training batch), which is exact and saves a pass per layer.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.model.config import LMGCSConfig
from gaitid.model.layers.masking import zero_padded_frames


class GLConv3d(nn.Module):
    """Global + local 3D conv: ``[N, Cin, T, H, W] -> [N, Cout, T, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, strips: int) -> None:
        super().__init__()
        self.strips = strips
        self.global_conv = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.local_conv = (
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False) if strips else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.global_conv(x))
        if self.local_conv is None:
            return out
        n, c, t, h, w = x.shape
        s = self.strips
        # [N, C, T, H, W] -> [N, C, T, S, H/S, W] -> [N, S, C, T, H/S, W] -> [N*S, C, T, H/S, W]
        parts = x.reshape(n, c, t, s, h // s, w).permute(0, 3, 1, 2, 4, 5)
        local = self.local_conv(parts.reshape(n * s, c, t, h // s, w))
        co = local.shape[1]
        # [N*S, Co, T, H/S, W] -> [N, S, Co, T, H/S, W] -> [N, Co, T, S, H/S, W] -> [N, Co, T, H, W]
        local = local.reshape(n, s, co, t, h // s, w).permute(0, 2, 3, 1, 4, 5)
        return out + F.leaky_relu(local.reshape(n, co, t, h, w))


class E3D(nn.Module):
    """Silhouettes ``[N, T, H, W]`` + mask ``[N, T]`` -> features ``[N, c, T, h2, w2]``."""

    def __init__(self, config: LMGCSConfig) -> None:
        super().__init__()
        c0, c1, c2, c3 = config.channels
        self.layers = nn.ModuleList(
            [
                nn.Conv3d(1, c0, 3, padding=1, bias=False),
                GLConv3d(c0, c1, config.local_strips),
                GLConv3d(c1, c2, config.local_strips),
                GLConv3d(c2, c3, config.local_strips),
            ]
        )
        self.pool_after = frozenset(config.pool_after)

    def forward(self, silhouettes: Tensor, mask: Tensor) -> Tensor:
        # [N, T, H, W] -> [N, 1, T, H, W]
        x = silhouettes.unsqueeze(1)
        padded = _has_padding(mask)
        if padded:
            x = zero_padded_frames(x, mask, time_dim=2)
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index == 0:
                x = F.leaky_relu(x)
            if padded:
                x = zero_padded_frames(x, mask, time_dim=2)
            if index in self.pool_after:
                x = F.max_pool3d(x, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        return x


class LayerConvs(NamedTuple):
    """One backbone layer's convolutions, as the export-time rewrites read them."""

    global_conv: nn.Conv3d
    local_conv: nn.Conv3d | None  # the strip-local branch of a GLConv layer
    strips: int  # 0 without a local branch


def layer_convs(backbone: E3D) -> list[LayerConvs]:
    """Each layer of ``backbone`` as ``(global conv, local conv or None, strips)``."""
    layers = []
    for layer in backbone.layers:
        if isinstance(layer, GLConv3d):
            local = layer.local_conv
            layers.append(LayerConvs(layer.global_conv, local, layer.strips if local else 0))
        else:
            assert isinstance(layer, nn.Conv3d)
            layers.append(LayerConvs(layer, None, 0))
    return layers


def _has_padding(mask: Tensor) -> bool:
    """Whether any frame is padding; an exported graph must always assume so.

    Skipping the masks when every walk fills T (all training batches) is exact: they would
    multiply by one. It saves a full pass over every backbone activation.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    return not bool(mask.all())
