"""LMGCS: joint local multi-scale and global contextual spatio-temporal gait network.

Paper: "Multi-view gait recognition with joint local multi-scale and global contextual
spatio-temporal features" (``shared/paper/lmgcs.md``), section III. Data flow per walk of n
frames (shapes for one walk; N walks in a batch):

    silhouettes [n, 64, 44] --E3D (III-A)--> F [c, n, h2, w2]
    --HPP (Eq. 1)--> M [m, c, n] --LMFE (Eq. 2)--> T [B, m, c, n] --MFF (Eqs. 3-5)--> C
    C --masked temporal max--> C^max [B*m, c] --G--> tri1_features        (L_tri1, Eq. 10)
    C --GSFE (Eqs. 6-9)-->      O    [B*m, c] --G--> tri2_features        (L_tri2, Eq. 11)
    tri2 --BNNeck--> logits (L_ce, Eq. 13);  tri2 --EmbeddingHead--> embedding [256]

G is one per-stripe FC (``SeparateFCs``, D = 256 by default) shared by both triplet paths, as
Eqs. 10-11 write the same G. The paper's test-time features (``part_features``) are G(O).

The 256-d service ``embedding`` is a fixed linear reduction of the part-normalised, concatenated
``part_features`` (P*D -> 256), L2-normalised (``model.embedding_head``). It is not trained by
gradient: after training, ``training.embedding_fit`` fits it in closed form (PCA + within-class
whitening) on the training walks; ``model/README.md`` has the measurements behind the choice.

Variable length: padding + ``lengths`` masks everywhere (E3D after each layer, LMFE windows,
temporal max, attention keys). See ``model/README.md`` for the argument that a walk alone and
in a padded batch get the same embedding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from gaitid.contract import FRAME_HEIGHT, FRAME_WIDTH
from gaitid.errors import GaitidError
from gaitid.model.config import LMGCSConfig
from gaitid.model.e3d import E3D
from gaitid.model.embedding_head import EmbeddingHead
from gaitid.model.gsfe import GSFE
from gaitid.model.layers.horizontal_pooling import HorizontalPooling
from gaitid.model.layers.masking import length_mask, masked_max
from gaitid.model.layers.separate_fc import SeparateBNNecks, SeparateFCs
from gaitid.model.lmfe import LMFE
from gaitid.model.mff import MFF
from gaitid.model.output import GaitOutput


class InputShapeError(GaitidError, ValueError):
    """Silhouettes or lengths that do not match the network's input contract."""


class LMGCSFeatures(NamedTuple):
    """What ``forward_features`` returns: the two readouts before the FC mapping G."""

    pooled: Tensor  # [N, P, c] masked temporal max C^max of the fused local features
    readout: Tensor  # [N, P, c] GSFE output O (== pooled with GSFE off)


class LMGCS(nn.Module):
    """The LMGCS network; ``forward(silhouettes [N,T,64,44], lengths [N]) -> GaitOutput``."""

    def __init__(self, config: LMGCSConfig) -> None:
        super().__init__()
        self.config = config
        c = config.feature_channels
        stripes = config.num_stripes
        self.embed_dim = config.embed_dim
        self.backbone = E3D(config)
        self.hpp = HorizontalPooling(config.parts, config.hpp)
        self.lmfe = LMFE(c, config.branches) if config.lmfe else None
        self.mff = MFF(config.fusion, c, len(config.branches))
        self.gsfe = (
            GSFE(
                c,
                config.heads,
                config.ffn_dim,
                config.enc_layers,
                config.dec_layers,
                config.dropout,
            )
            if config.gsfe
            else None
        )
        self.fc = SeparateFCs(stripes, c, config.embed_dim)
        self.bnneck = (
            SeparateBNNecks(stripes, config.embed_dim, config.num_classes)
            if config.num_classes
            else None
        )
        self.embedding_head = EmbeddingHead(stripes, config.embed_dim, config.embedding_dim)

    def forward_features(self, silhouettes: Tensor, lengths: Tensor) -> LMGCSFeatures:
        """Backbone to readouts: E3D, HPP, LMFE, MFF, then temporal max and GSFE."""
        _check_inputs(silhouettes, lengths)
        mask = length_mask(lengths, silhouettes.shape[1])
        feature_map = self.backbone(silhouettes, mask)  # [N, c, T, h2, w2]
        parts = self.hpp(feature_map)  # [N, m, c, T]
        # [N, m, c, T] -> [N, B, m, c, T]; without LMFE, one identity branch (B = 1)
        branches = parts.unsqueeze(1) if self.lmfe is None else self.lmfe(parts, lengths, mask)
        fused = self.mff(branches)
        n, b, m, c, t = fused.shape
        # [N, B, m, c, T] -> [N, B*m, c, T], stripes ordered branch-major
        stripes = fused.reshape(n, b * m, c, t)
        pooled = masked_max(stripes, mask)  # [N, P, c]
        readout = self.gsfe(stripes, mask) if self.gsfe is not None else pooled
        return LMGCSFeatures(pooled=pooled, readout=readout)

    def test_features(self, features: LMGCSFeatures) -> Tensor:
        """The paper's test-time part features G(O) ``[N, P, D]`` (G(C^max) with GSFE off):
        what the part-wise distance compares and the embedding head reduces."""
        return self.fc(features.readout if self.gsfe is not None else features.pooled)

    def forward_head(self, features: LMGCSFeatures) -> GaitOutput:
        """FC mapping G, BNNeck classifier and the 256-d embedding (fixed reduction of G(O))."""
        tri1 = self.fc(features.pooled)  # [N, P, D]
        tri2 = self.test_features(features) if self.gsfe is not None else tri1
        logits = self.bnneck(tri2) if self.bnneck is not None else None
        embedding = self.embedding_head(tri2)  # [N, P, D] -> [N, 256], unit length
        return GaitOutput(
            tri1_features=tri1,
            tri2_features=tri2,
            part_features=tri2,
            logits=logits,
            embedding=embedding,
        )

    def forward(self, silhouettes: Tensor, lengths: Tensor) -> GaitOutput:
        return self.forward_head(self.forward_features(silhouettes, lengths))


class EmbeddingOnly(nn.Module):
    """The exported graph: silhouettes + lengths -> embedding only (no classifier)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # an LMGCS, or anything returning its GaitOutput (an ensemble)

    def forward(self, silhouettes: Tensor, lengths: Tensor) -> Tensor:
        return self.model(silhouettes, lengths).embedding


def _check_inputs(silhouettes: Tensor, lengths: Tensor) -> None:
    """Reject inputs outside the contract with a message naming the bad value.

    Only shape/dtype checks (static under export); the value check on lengths runs in eager
    mode only, because data-dependent branches cannot be traced.
    """
    if silhouettes.dim() != 4 or tuple(silhouettes.shape[2:]) != (FRAME_HEIGHT, FRAME_WIDTH):
        raise InputShapeError(
            f"silhouettes must be [N, T, {FRAME_HEIGHT}, {FRAME_WIDTH}], "
            f"got {tuple(silhouettes.shape)}"
        )
    if lengths.dim() != 1 or lengths.shape[0] != silhouettes.shape[0]:
        raise InputShapeError(
            f"lengths must be [N] with N={silhouettes.shape[0]}, got {tuple(lengths.shape)}"
        )
    if lengths.dtype != torch.int64:
        raise InputShapeError(f"lengths must be int64, got {lengths.dtype}")
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
        t = silhouettes.shape[1]
        bad = lengths[(lengths < 1) | (lengths > t)]
        if bad.numel():
            raise InputShapeError(
                f"lengths must lie in 1..T={t} (real frames per walk), got {bad.tolist()}"
            )
