"""Core subcommands of the ``gaitid`` CLI (torch-free)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
