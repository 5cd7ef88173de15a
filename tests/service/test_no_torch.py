"""The service never imports torch (the deployment image has none)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module", ["gaitid.service.app", "gaitid.service.cli", "gaitid.service.db.schema"]
)
def test_service_imports_without_torch(module: str) -> None:
    code = f"import sys; import {module}; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
