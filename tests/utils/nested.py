"""Helpers for looking inside nested checkpoint structures in tests."""

from __future__ import annotations


def strings_in(value: object) -> list[str]:
    """Every string inside a nested dict / list / tuple structure (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []
