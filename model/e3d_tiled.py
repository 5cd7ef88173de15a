"""E3D computed with 2-D convolutions over frames tiled down the height (export only).

ONNX Runtime runs 2-D convolutions in its blocked NCHWc layout at most of the CPU's peak, but
every op between two such convolutions that is not NCHWc-aware (transpose, slice, pad, concat
off the channel axis, broadcast multiply) costs a reorder out of the layout and one back in.
Running the 3x3x3 convolutions as 2-D ones over time-stacked channels (``conv3d_as_2d``) left
about half of a served walk's time in such data movement (BENCHMARKS.md). This module removes
most of it by choosing a layout in which a 3-D convolution *is* a sum of plain 2-D ones:

    [N, C, T, H, W]  ->  [N, C, T * P, W]      each frame followed by P - H zero rows

In that layout the frame before or after a pixel is exactly P rows above or below it, so a
time tap is a dilation of P along the height; the three height taps ``dh`` of the 3-D kernel
become three convolutions with kernel (time, width), dilation (P, 1) and the top/bottom
padding shifted by ``dh``:

    conv3d(x, w) = sum_{dh in -1,0,1} conv2d(x, w[:, :, :, dh + 1, :], dilation=(P, 1),
                                             pads=(P - dh, 1, P + dh, 1))

The zero rows give each frame its own zero padding in height; they only stay zero if rows
that a convolution wrote there are zeroed again, which the length mask (padded frames) does in
the same multiply. The GLConv local branch sees its horizontal strips alone (zero padded at
strip edges); here the rows the shifted taps would read across a strip edge are zeroed in that
tap's input instead (``dh = -1`` reads the row above, so strips' last rows are zeroed for it,
and the first rows for ``dh = +1``), which gives the same sums without cutting the map.

Pooling (1, 2, 2) is a plain 2x2 max pool: P is chosen so that every pooled pitch stays
whole (68 rows for 64-row frames: 68 -> 34 -> 17), so a pooling window never mixes a frame's
rows with zero rows. The price is P / H more rows convolved (6 %), against the copies saved.

Exact up to float summation order; tested against :class:`E3D` in ``tests/model``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.model.e3d import E3D, layer_convs
from gaitid.model.layers.conv3d_as_2d import check_replaceable


def frame_pitch(height: int, pools: int) -> int:
    """Rows per frame: at least one zero row, and divisible by ``2 ** pools`` with a zero row
    left after every pooling."""
    step = 2**pools
    pitch = height + 1
    while pitch % step or (pitch // step) <= height // step:
        pitch += 1
    return pitch


class _TiledConv3d(nn.Module):
    """A bias-free 3x3x3 Conv3d (padding 1) on frames tiled with pitch ``P``: three 2-D convs."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        check_replaceable(conv)
        weight = conv.weight.detach()  # [O, C, kt, kh, kw]
        # one (time, width) kernel per height tap
        self.taps = nn.ParameterList(
            [nn.Parameter(weight[:, :, :, dh].clone(), requires_grad=False) for dh in range(3)]
        )

    def forward(self, inputs: tuple[Tensor, Tensor, Tensor], pitch: int) -> Tensor:
        """``inputs``: what the height taps above, at and below a row read (the same tensor
        for a global conv; strip-edge-masked ones for the local conv)."""
        out: Tensor | None = None
        for dh, (x, weight) in enumerate(zip(inputs, self.taps, strict=True)):
            shift = dh - 1
            # zero rows above/below so that tap k of the time kernel reads frame t + k - 1
            padded = F.pad(x, (1, 1, pitch - shift, pitch + shift))
            y = F.conv2d(padded, weight, dilation=(pitch, 1))
            out = y if out is None else out + y
        assert out is not None
        return out


class TiledE3D(nn.Module):
    """Drop-in replacement of an :class:`E3D` for export: same input, same output."""

    def __init__(self, backbone: E3D) -> None:
        super().__init__()
        self.pool_after = backbone.pool_after
        self.layers = nn.ModuleList()
        self.local = nn.ModuleList()
        self.strips: list[int] = []
        for convs in layer_convs(backbone):
            self.layers.append(_TiledConv3d(convs.global_conv))
            local = convs.local_conv
            self.local.append(_TiledConv3d(local) if local is not None else nn.Identity())
            self.strips.append(convs.strips)

    def forward(self, silhouettes: Tensor, mask: Tensor) -> Tensor:
        n, t, h, w = silhouettes.shape
        pitch = frame_pitch(h, len(self.pool_after))
        # [N, T, H, W] -> [N, T, P, W] -> [N, 1, T*P, W]
        x = F.pad(silhouettes, (0, 0, 0, pitch - h)).reshape(n, 1, t * pitch, w)
        x = x * _row_mask(mask, h, pitch, 0, 0)
        for index, (layer, local) in enumerate(zip(self.layers, self.local, strict=True)):
            strips = self.strips[index]
            out = F.leaky_relu(layer((x, x, x), pitch))
            if strips:
                above = x * _row_mask(mask, h, pitch, strips, -1)  # strips' last rows zeroed
                below = x * _row_mask(mask, h, pitch, strips, 1)  # strips' first rows zeroed
                out = out + F.leaky_relu(local((above, x, below), pitch))
            if index in self.pool_after:
                out = F.max_pool2d(out, 2)
                pitch, h, w = pitch // 2, h // 2, w // 2
            x = out * _row_mask(mask, h, pitch, 0, 0)
        # [N, C, T*P, W] -> [N, C, T, P, W] -> the frames' own rows
        c = x.shape[1]
        return x.reshape(n, c, t, pitch, w)[:, :, :, :h]


def _row_mask(mask: Tensor, height: int, pitch: int, strips: int, edge: int) -> Tensor:
    """``[N, 1, T*P, 1]`` float: 1 on the rows of real frames, 0 on zero rows and padded frames;
    with ``strips``, also 0 on each strip's last row (``edge=-1``) or first row (``edge=1``)."""
    rows = torch.arange(pitch, device=mask.device)
    keep = rows < height
    if strips:
        strip = height // strips
        cut = strip - 1 if edge < 0 else 0
        keep = keep & (rows % strip != cut)
    n, t = mask.shape
    valid = mask.unsqueeze(-1) & keep  # [N, T, P]
    return valid.reshape(n, 1, t * pitch, 1).to(torch.float32)
