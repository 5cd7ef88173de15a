"""Typed errors of the dataset readers.

Every reader failure names the offending path so a user can find the bad file among
thousands of walks; they subclass ``ValueError`` because the data, not the code, is wrong.
"""

from __future__ import annotations

from pathlib import Path

from gaitid.errors import GaitidError


class DatasetError(GaitidError, ValueError):
    """A dataset on disk cannot be used as asked (missing subjects, empty root, ...)."""


class DatasetFormatError(DatasetError):
    """A file or folder of a dataset is malformed; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
