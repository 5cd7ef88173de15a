"""gaitid.cpu: the CPU's flags and what they decide for int8 files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaitid import cpu
from tests.utils.cpu import pretend_cpu


@pytest.mark.parametrize(
    ("flags", "machine", "saturates"),
    [
        ({"fpu", "avx2", "fma"}, "x86_64", True),  # AVX2 only (the EPYC Zen 3 of the bug)
        ({"avx2", "avx512f", "avx512bw"}, "x86_64", True),  # AVX-512 without VNNI (Skylake-SP)
        ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", False),
        ({"avx2", "avx_vnni"}, "x86_64", False),  # Alder Lake and later clients
        ({"avx2", "amx_tile", "amx_int8"}, "x86_64", False),
        ({"avx2"}, "AMD64", True),
        (set(), "aarch64", False),  # other kernels
        (set(), "arm64", False),
    ],
)
def test_only_x86_without_vnni_saturates_8bit_weights(
    flags: set[str], machine: str, saturates: bool
) -> None:
    assert cpu.saturates_8bit_weights(frozenset(flags), machine) is saturates


def test_flags_come_from_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    monkeypatch.setattr(cpu, "_CPUINFO", info)
    assert cpu.cpu_flags() == frozenset({"fpu", "avx2", "avx512_vnni"})  # the first CPU's
    assert not cpu.saturates_8bit_weights(machine="x86_64")
    monkeypatch.setattr(cpu, "_CPUINFO", tmp_path / "absent")
    assert cpu.cpu_flags() == frozenset()
    assert cpu.saturates_8bit_weights(machine="x86_64")  # unknown flags: assume the worst


def test_the_int8_problem_is_named_only_for_8bit_weights_on_such_a_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pretend_cpu(monkeypatch, tmp_path, "fpu avx2")
    eight = {"precision": "int8", "quantization": "static QDQ, U8 activations / S8 weights"}
    seven = {"precision": "int8", "quantization": "static QDQ, U8 activations / S8 7-bit weights"}
    problem = cpu.int8_kernel_problem(eight)
    assert problem is not None and "without VNNI" in problem
    assert cpu.int8_kernel_problem(seven) is None
    assert cpu.int8_kernel_problem({"precision": "float32"}) is None
    assert cpu.int8_kernel_problem({}) is None
    pretend_cpu(monkeypatch, tmp_path, "fpu avx2 avx_vnni")
    assert cpu.int8_kernel_problem(eight) is None
