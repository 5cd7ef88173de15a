"""GSFE, the global self-attention feature extractor (paper III-D, Eqs. 6-9).

For every part p and branch s of a walk, the n frame tokens C^1..C^n (width c) pass a
transformer encoder (multi-head self-attention, Eqs. 7-8, and the FFN of Eq. 9, each with a
residual and post-LayerNorm: "Add & Norm"); a decoder whose single query is the temporal max
C^max then cross-attends to the encoded tokens and returns O_{s,p} (Eq. 6).

- Weights are shared by all parts and branches (parts and branches are folded into the batch):
  Table IX's parameter count grows by exactly one per-branch FC (2^20 = 16 parts x 256 x 256)
  per added branch, so the transformer cannot be per branch.
- Padding: keys of padded frames get -inf before the softmax, so a padded frame has exactly
  zero weight; the max query is taken over real frames only.
- The decoder's self-attention sees a single query token, where softmax over one key is 1 and
  the block reduces exactly to ``out_proj(value_proj(q))``; Q and K projections there would get
  zero gradient forever, so the block is written as that reduced form (no dead parameters).
- Attention is written out (matmul, masked softmax) rather than nn.MultiheadAttention: its
  inference fast path turns padded batches into nested tensors, which changes the padded rows
  and does not export to ONNX.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.model.layers.masking import masked_max


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention (Eq. 8) with ``heads`` heads and a key-padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor, key_mask: Tensor) -> Tensor:
        """``query [S, Lq, d]``, ``memory [S, Lk, d]``, ``key_mask [S, Lk]`` (True = real)."""
        s, lq, d = query.shape
        lk = memory.shape[1]
        h = self.heads
        # [S, L, d] -> [S, L, h, d/h] -> [S, h, L, d/h]
        q = self.query(query).reshape(s, lq, h, d // h).transpose(1, 2)
        k = self.key(memory).reshape(s, lk, h, d // h).transpose(1, 2)
        v = self.value(memory).reshape(s, lk, h, d // h).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))
        # [S, Lk] -> [S, 1, 1, Lk]: padded keys get zero weight
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        attn = self.dropout(torch.softmax(scores, dim=-1))
        # [S, h, Lq, d/h] -> [S, Lq, h, d/h] -> [S, Lq, d]
        mixed = torch.matmul(attn, v).transpose(1, 2).reshape(s, lq, d)
        return self.out(mixed)


class FeedForward(nn.Module):
    """Eq. 9: ``max(0, x W1 + b1) W2 + b2``."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.outer(self.dropout(F.relu(self.inner(x))))


class EncoderLayer(nn.Module):
    """Self-attention + FFN, each with residual and post-LayerNorm."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, key_mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Single-query decoder layer: (reduced) self-attention, cross-attention, FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        # self-attention over one token == out(value(q)); see the module docstring
        self.self_value = nn.Linear(dim, dim)
        self.self_out = nn.Linear(dim, dim)
        self.cross = MultiHeadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor, key_mask: Tensor) -> Tensor:
        q = self.norm1(query + self.dropout(self.self_out(self.self_value(query))))
        q = self.norm2(q + self.dropout(self.cross(q, memory, key_mask)))
        return self.norm3(q + self.dropout(self.ffn(q)))


class GSFE(nn.Module):
    """``C [N, P, c, T]`` + mask ``[N, T]`` -> ``O [N, P, c]`` (Eq. 6), P = branches x parts."""

    def __init__(
        self, dim: int, heads: int, ffn_dim: int, enc_layers: int, dec_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            EncoderLayer(dim, heads, ffn_dim, dropout) for _ in range(enc_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(dim, heads, ffn_dim, dropout) for _ in range(dec_layers)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        n, p, c, t = x.shape
        # the decoder query C^max: [N, P, c] -> [N*P, 1, c]
        query = masked_max(x, mask).reshape(n * p, 1, c)
        # tokens: [N, P, c, T] -> [N, P, T, c] -> [N*P, T, c]; key mask [N, T] -> [N*P, T]
        tokens = x.permute(0, 1, 3, 2).reshape(n * p, t, c)
        key_mask = mask.unsqueeze(1).expand(n, p, t).reshape(n * p, t)
        for layer in self.encoder:
            tokens = layer(tokens, key_mask)
        for layer in self.decoder:
            query = layer(query, tokens, key_mask)
        # [N*P, 1, c] -> [N, P, c]
        return query.reshape(n, p, c)
