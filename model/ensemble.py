"""Several independently trained LMGCS networks read as one walk embedding.

Why: on two CPU cores a continuation of one trained network ends where it started. Nine
continuations of the shipped weights on the same 62 identities (other data, optimisers,
batch shapes, learning rates, weight averaging; ``models/README.md``, "Experiments") each
landed level with it or below on people it never saw, which says that lineage sits in one
minimum. A network trained from another random start makes other mistakes, and reading the
two side by side is the classic remedy (deep ensembles, Lakshminarayanan et al. 2017; every
re-identification benchmark's top entries). Averaging their *weights* would be meaningless
(independent networks share no coordinates; ``training.weight_average`` refuses it), so the
members stay whole and their *features* are joined.

The walk's part features of every member (``[N, P_i, D]`` each, the paper's test-time features
G(O)) are concatenated along the part axis, ``[N, sum P_i, D]``, and one
:class:`~gaitid.model.embedding_head.EmbeddingHead` maps them to the 256-d unit embedding. That
head is fitted in closed form like a single network's (``training.embedding_fit``: PCA, then
within-class whitening), so it weighs the members by what separates identities in their joint
features rather than by a fixed average of two unrelated 256-d spaces, and the service contract
(one 256-d vector, cosine) is unchanged. The part-wise Euclidean distance of the paper reads the
concatenated parts as one network's. The members' own embedding heads and classifiers are kept
in the weights (so a member can be taken back out and continued) but not computed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gaitid.errors import GaitidError
from gaitid.model.config import LMGCSConfig
from gaitid.model.embedding_head import EmbeddingHead
from gaitid.model.lmgcs import LMGCS
from gaitid.model.output import GaitOutput


class EnsembleError(GaitidError, ValueError):
    """Members that cannot be joined into one embedding."""


class LMGCSEnsemble(nn.Module):
    """``forward(silhouettes [N,T,64,44], lengths [N]) -> GaitOutput`` of several networks.

    ``part_features`` (and the triplet fields, equal to them: an ensemble is not trained) are
    the members' concatenated along the part axis; ``logits`` is ``None``; ``embedding`` is the
    joint head's. ``member_configs`` fix the members' shapes; every member must map its parts
    to the same ``embed_dim`` and produce the same ``embedding_dim``.
    """

    def __init__(self, member_configs: Sequence[LMGCSConfig]) -> None:
        super().__init__()
        if len(member_configs) < 2:
            raise EnsembleError(
                f"an ensemble needs at least two members, got {len(member_configs)}"
            )
        dims = {(config.embed_dim, config.embedding_dim) for config in member_configs}
        if len(dims) != 1:
            raise EnsembleError(
                "every member must map its parts to one size and embed to one size; got "
                f"(embed_dim, embedding_dim) {sorted(dims)}"
            )
        ((part_dim, out_dim),) = dims
        self.members = nn.ModuleList(LMGCS(config) for config in member_configs)
        stripes = sum(config.num_stripes for config in member_configs)
        self.embedding_head = EmbeddingHead(stripes, part_dim, out_dim)

    @property
    def member_configs(self) -> list[LMGCSConfig]:
        return [member.config for member in self.networks]

    @property
    def networks(self) -> list[LMGCS]:
        """The members, typed (``nn.ModuleList`` iterates as plain modules)."""
        return [member for member in self.members if isinstance(member, LMGCS)]

    def forward(self, silhouettes: Tensor, lengths: Tensor) -> GaitOutput:
        parts = torch.cat(
            [
                member.test_features(member.forward_features(silhouettes, lengths))
                for member in self.networks
            ],
            dim=1,
        )
        return GaitOutput(
            tri1_features=parts,
            tri2_features=parts,
            part_features=parts,
            logits=None,
            embedding=self.embedding_head(parts),
        )


#: Any network this project trains or ships: one LMGCS, or an ensemble of them.
GaitNetwork = LMGCS | LMGCSEnsemble
