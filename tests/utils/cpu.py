"""Tests that need another CPU than this one: its /proc/cpuinfo flags and architecture."""

from __future__ import annotations

from pathlib import Path

import pytest


def pretend_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str, machine: str = "x86_64"
) -> None:
    """Make ``gaitid.cpu`` read ``flags`` (space-separated) as this CPU's, on ``machine``."""
    from gaitid import cpu

    info = tmp_path / f"cpuinfo-{abs(hash(flags))}"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(cpu, "_CPUINFO", info)
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
