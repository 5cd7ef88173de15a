"""Architecture settings of the LMGCS network and its named variants.

One frozen, validated config per network; every knob is one field with a short comment, modes
are ``Literal`` types and unknown keys are rejected, so a misspelt override fails loudly
instead of being silently ignored. Cross-field rules (strip and part counts that must divide
the feature-map height, fusion that needs several branches, ...) are checked here so that an
impossible network is refused before any tensor is built.

Variants (see ``model/README.md`` for the measurements behind ``lite``):

- ``paper``: CASIA-B settings of section IV-B (32/64/128/128 channels, branches 1/3/5, static
  fusion, GSFE 4 x 4, D = 256), with HPP as Table I defines its operator: GAP and GMP
  concatenated (part features of 2c = 256 channels) over 16 parts, the reading whose
  parameter count matches Table IX (``model/README.md``). ``hpp="sum", parts=32`` is the
  ablation (OpenGait's HPP).
- ``paper-oumvlp``: the OU-MVLP widths 64/128/256/256, otherwise as ``paper``.
- ``lite``: a CPU-friendly reduction for serving and CPU training.
- ``tiny``: a few thousand parameters, for tests only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gaitid.contract import EMBEDDING_DIM, FRAME_HEIGHT


class LMGCSConfig(BaseModel):
    """Every architecture setting of one LMGCS network (frozen; unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # E3D backbone (III-A): widths of its four 3D conv layers (paper: 32/64/128/128 on CASIA-B)
    channels: tuple[int, int, int, int] = (32, 64, 128, 128)
    # indices of E3D layers followed by a (1, 2, 2) spatial max pool (GaitGL: after layer 1)
    pool_after: tuple[int, ...] = (1,)
    # strips of the local 3D conv in layers 1-3 (GaitGL halving 3 -> 8); 0 = global only
    local_strips: int = Field(8, ge=0)
    # m, horizontal parts of the HPP mapping (Eq. 1)
    parts: int = Field(32, ge=1)
    # how HPP combines GAP and GMP (Eq. 1's (+)): "concat" (Table I: concatenation; part
    # features then have 2c channels) or "sum" (OpenGait's HPP; c channels). The default is
    # "sum" so configs saved before this field existed load as they were trained.
    hpp: Literal["sum", "concat"] = "sum"
    # LMFE on (III-B); off = part features go straight to fusion/readout (Table VIII row 1)
    lmfe: bool = True
    # sub-sequence window sizes s, one LMFE branch each, fine to coarse (Tables IX, XIII)
    branches: tuple[int, ...] = (1, 3, 5)
    # MFF (III-C): Eq. 4 cumulative sum fine->coarse, its reverse (Table XI), Eq. 5, or none
    fusion: Literal["static", "static_reverse", "attention", "none"] = "static"
    # GSFE transformer readout (III-D); off = masked temporal max (Table VIII baselines)
    gsfe: bool = True
    # GSFE encoder and decoder depths (paper 4 x 4; Table X also 1 x 1)
    enc_layers: int = Field(4, ge=1)
    dec_layers: int = Field(4, ge=1)
    # attention heads of every GSFE attention (must divide the last E3D width)
    heads: int = Field(8, ge=1)
    # hidden width of the GSFE feed-forward network, Eq. 9 (nn.Transformer default 2048)
    ffn_dim: int = Field(2048, ge=1)
    # dropout inside GSFE attention and FFN during training
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # D, output size of the per-part FC mapping G (Table XII: 32..1024)
    embed_dim: int = Field(256, ge=1)
    # K identities of the BNNeck classifier (0 = no classifier, e.g. for export)
    num_classes: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _legacy_embedding_dim(cls, data: Any) -> Any:
        """Configs saved before the field was removed carry ``embedding_dim`` (always 256, the
        contract's): accept that value, refuse any other."""
        if isinstance(data, dict) and "embedding_dim" in data:
            data = dict(data)
            if data.pop("embedding_dim") != EMBEDDING_DIM:
                raise ValueError(
                    f"the service embedding is fixed by the ONNX contract to {EMBEDDING_DIM}"
                )
        return data

    @property
    def embedding_dim(self) -> int:
        """Size of the service embedding: fixed by ``gaitid.contract.EMBEDDING_DIM``."""
        return EMBEDDING_DIM

    @model_validator(mode="after")
    def _check_consistency(self) -> LMGCSConfig:
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must all be >= 1, got {self.channels}")
        bad_pools = [i for i in self.pool_after if not 0 <= i <= 3]
        if bad_pools or len(set(self.pool_after)) != len(self.pool_after):
            raise ValueError(
                f"pool_after holds distinct E3D layer indices 0..3, got {self.pool_after}"
            )
        if self.local_strips == 1:
            raise ValueError("local_strips must be 0 (global only) or >= 2, got 1")
        for layer in (1, 2, 3):
            height = self.height_at_layer(layer)
            if self.local_strips and height % self.local_strips:
                raise ValueError(
                    f"local_strips={self.local_strips} does not divide the height {height} "
                    f"of E3D layer {layer}; use a divisor of {height}"
                )
        if self.feature_height % self.parts:
            raise ValueError(
                f"parts={self.parts} does not divide the final feature height "
                f"{self.feature_height}; use a divisor of {self.feature_height}"
            )
        if not self.branches:
            raise ValueError("branches must hold at least one window size")
        if any(s < 1 or s % 2 == 0 for s in self.branches):
            raise ValueError(f"branch window sizes must be odd and >= 1, got {self.branches}")
        if list(self.branches) != sorted(set(self.branches)):
            raise ValueError(
                f"branches must be distinct and ordered fine to coarse, got {self.branches}"
            )
        if not self.lmfe and (self.branches != (1,) or self.fusion != "none"):
            raise ValueError(
                "with lmfe=False there is one identity branch: set branches=(1,) and "
                f"fusion='none' (got branches={self.branches}, fusion={self.fusion!r})"
            )
        if len(self.branches) == 1 and self.fusion != "none":
            raise ValueError(
                f"fusion={self.fusion!r} fuses several branches; with the single branch "
                f"{self.branches} use fusion='none'"
            )
        if self.feature_channels % self.heads:
            raise ValueError(
                f"heads={self.heads} does not divide the feature width {self.feature_channels}"
            )
        return self

    def height_at_layer(self, layer: int) -> int:
        """Feature-map height seen by E3D layer ``layer`` (after the pools before it)."""
        pools = sum(1 for i in self.pool_after if i < layer)
        return FRAME_HEIGHT // 2**pools

    @property
    def feature_height(self) -> int:
        """Height of the E3D output map that HPP splits into ``parts``."""
        return FRAME_HEIGHT // 2 ** len(self.pool_after)

    @property
    def feature_channels(self) -> int:
        """c, the width of the part features: the last E3D width, doubled by ``hpp="concat"``."""
        return self.channels[-1] * (2 if self.hpp == "concat" else 1)

    @property
    def num_stripes(self) -> int:
        """P = parts x branches, the number of per-part feature vectors of one walk."""
        return self.parts * len(self.branches)


def _variant(**fields: Any) -> LMGCSConfig:
    return LMGCSConfig(**fields)


#: Named variants; ``create_model`` accepts their names.
VARIANTS: dict[str, LMGCSConfig] = {
    "paper": _variant(hpp="concat", parts=16),
    "paper-oumvlp": _variant(channels=(64, 128, 256, 256), hpp="concat", parts=16),
    # CPU reduction, chosen by measurement (model/README.md, BENCHMARKS.md): half the widths,
    # pool before the first GL layer too, global-plus-4-strip convs, 16 parts, GSFE 1 x 1.
    "lite": _variant(
        channels=(16, 32, 64, 64),
        pool_after=(0, 1),
        local_strips=4,
        parts=16,
        enc_layers=1,
        dec_layers=1,
        heads=4,
        ffn_dim=256,
    ),
    "tiny": _variant(
        channels=(2, 4, 8, 8),
        pool_after=(0, 1),
        local_strips=2,
        parts=4,
        enc_layers=1,
        dec_layers=1,
        heads=2,
        ffn_dim=16,
        embed_dim=8,
    ),
}
