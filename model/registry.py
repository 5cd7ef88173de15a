"""Build an LMGCS network from a variant name or a config (the one entry point)."""

from __future__ import annotations

from typing import Any

from gaitid.errors import GaitidError
from gaitid.model.config import VARIANTS, LMGCSConfig
from gaitid.model.lmgcs import LMGCS


class UnknownVariantError(GaitidError, KeyError):
    """A variant name that is not in ``model.config.VARIANTS``."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_config(
    variant: str | LMGCSConfig, num_classes: int = 0, **overrides: Any
) -> LMGCSConfig:
    """Variant name or config + overrides -> a validated config (unknown keys rejected)."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise UnknownVariantError(
                f"unknown model variant {variant!r}; choose one of {sorted(VARIANTS)}"
            )
        base = VARIANTS[variant]
    else:
        base = variant
    fields = base.model_dump()
    fields.update(overrides)
    if num_classes:
        fields["num_classes"] = num_classes
    return LMGCSConfig.model_validate(fields)


def create_model(variant: str | LMGCSConfig, num_classes: int = 0, **overrides: Any) -> LMGCS:
    """A freshly initialised LMGCS for ``variant`` with ``num_classes`` BNNeck classes.

    ``overrides`` replace config fields (e.g. ``fusion="attention"``); unknown names raise
    pydantic's ``ValidationError`` naming the field.
    """
    return LMGCS(resolve_config(variant, num_classes, **overrides))
