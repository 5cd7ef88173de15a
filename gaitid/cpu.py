"""What this machine's CPU can do, as its flags say (Linux ``/proc/cpuinfo``).

Two choices depend on it: bf16 autocast in training pays only with bf16 matrix units
(``training.setup``), and int8 files are only right everywhere with 7-bit weights because
CPUs without VNNI saturate 8-bit ones (``model/quantize.py``, ``bench/int8_agreement.py``).
torch-free.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path

from gaitid.contract import int8_weight_bits

_CPUINFO = Path("/proc/cpuinfo")
#: Flags of x86 instructions that add int8 products in 32 bits (AVX-512 VNNI, AVX-VNNI, AMX).
INT8_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})


def cpu_flags() -> frozenset[str]:
    """The flags of the first CPU listed; empty where ``/proc/cpuinfo`` cannot be read."""
    try:
        with _CPUINFO.open(encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return frozenset()


def saturates_8bit_weights(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether ONNX Runtime's int8 (U8S8) kernels saturate 8-bit weights on this CPU.

    An x86 CPU without VNNI multiplies with ``pmaddubsw``, which adds each pair of u8 x s8
    products in 16 bits with saturation; 8-bit weights overflow it and the embeddings drift
    (cosine 0.744 to fp32 measured on an AVX2 EPYC, models/README.md "Int8 model"). 7-bit
    weights cannot. Other architectures use other kernels: not affected. ``flags`` and
    ``machine`` default to this machine's.
    """
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in _X86_MACHINES:
        return False
    return INT8_VNNI_FLAGS.isdisjoint(cpu_flags() if flags is None else flags)


def int8_kernel_problem(meta: Mapping[str, str]) -> str | None:
    """Why this CPU would not compute the model of an ONNX file with this metadata, or ``None``.

    An int8 file with 8-bit weights on an x86 CPU without VNNI loads and runs, with embeddings
    that are no longer the model's: the service refuses to serve it and the evaluation to
    measure it, both with these words."""
    if int8_weight_bits(meta) != 8 or not saturates_8bit_weights():
        return None
    return (
        "an int8 model with 8-bit weights, which ONNX Runtime's integer kernels saturate on "
        "this CPU (x86 without VNNI), so its embeddings would not be the model's; use the fp32 "
        "file or re-quantise it with `gaitid quantize`, whose 7-bit weights are right on every CPU"
    )
