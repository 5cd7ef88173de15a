"""The LMGCS gait recognition network (PyTorch). Imported by training and export only.

The re-exports are lazy (PEP 562): ``import model.cli`` or ``model.config`` must not load torch,
so that registering the CLI commands keeps ``gaitid --help`` and ``gaitid serve`` torch-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gaitid.model.config import VARIANTS, LMGCSConfig
    from gaitid.model.lmgcs import LMGCS
    from gaitid.model.output import GaitOutput
    from gaitid.model.registry import create_model

_EXPORTS = {
    "VARIANTS": "gaitid.model.config",
    "LMGCSConfig": "gaitid.model.config",
    "LMGCS": "gaitid.model.lmgcs",
    "GaitOutput": "gaitid.model.output",
    "create_model": "gaitid.model.registry",
}

__all__ = ["LMGCS", "VARIANTS", "GaitOutput", "LMGCSConfig", "create_model"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
