"""What this machine's CPU can do, as its flags say (Linux ``/proc/cpuinfo``).

Two choices depend on it: bf16 autocast in training pays only with bf16 matrix units
(``training.setup``), and int8 files are only right everywhere with 7-bit weights because
CPUs without VNNI saturate 8-bit ones (``model/quantize.py``, ``bench/int8_agreement.py``).
torch-free.
"""

from __future__ import annotations

from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")


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
