"""The single output type of every gait network in this project.

The same structure is returned in training and in eval, so losses, evaluation and export all
read the same fields. Shapes use N walks, P = parts x branches feature stripes, D the mapped
feature size (256 by default) and K the number of training identities.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class GaitOutput(NamedTuple):
    """What a forward pass returns.

    - ``tri1_features``: ``[N, P, D]`` mapped temporal max of the fused local features,
      G(C^max), the input of L_tri1 (paper Eq. 10).
    - ``tri2_features``: ``[N, P, D]`` mapped GSFE output G(O), the input of L_tri2 (Eq. 11);
      with GSFE off it equals ``tri1_features``' source readout.
    - ``part_features``: ``[N, P, D]`` the features compared by the paper's part-wise
      Euclidean distance at test time.
    - ``logits``: ``[N, P, K]`` BNNeck classifier logits per stripe (cross-entropy, Eq. 13);
      ``None`` when the model has no classifier (``num_classes == 0``).
    - ``embedding``: ``[N, 256]`` one L2-normalised vector per walk, the service's template.
    """

    tri1_features: Tensor
    tri2_features: Tensor
    part_features: Tensor
    logits: Tensor | None
    embedding: Tensor
