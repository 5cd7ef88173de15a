"""Peak memory of one ONNX Runtime run of a model, by batch shape.

Each shape runs in a fresh subprocess that loads the model through the service's
``Embedder`` (VmHWM after loading), embeds one batch of random walks of that shape, and
reports the process's peak resident memory (VmHWM, Linux ``/proc``). The difference is what
one inference run adds to a server's memory: the inference part of the ceiling stated in
``service/README.md``.

    .venv/bin/python bench/inference_memory.py --shapes 80x1 256x1 256x2 64x8 128x8 512x1 1000x1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = ROOT / "models" / "gaitid-lmgcs.onnx"

_PROBE = """
import json, sys
from pathlib import Path
import numpy as np
from gaitid.service.walks.inference import Embedder

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

model, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
embedder = Embedder(model)
loaded = hwm()
rng = np.random.default_rng(0)
walks = [rng.integers(0, 256, (frames, 64, 44), dtype=np.uint8) for _ in range(batch)]
embedder.embed_batch(walks)
print(json.dumps({"loaded_mib": loaded, "peak_mib": hwm()}))
"""


def measure(model: Path, frames: int, batch: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model), str(frames), str(batch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument(
        "--shapes", nargs="+", default=["80x1", "256x1", "256x2", "64x8", "128x8", "512x1"]
    )
    args = parser.parse_args(argv)
    print("| frames x walks | padded frames | after loading (MiB) | peak (MiB) | run adds (MiB) |")
    print("|---|---|---|---|---|")
    for shape in args.shapes:
        frames, batch = (int(v) for v in shape.split("x"))
        result = measure(args.model, frames, batch)
        added = result["peak_mib"] - result["loaded_mib"]
        print(
            f"| {frames} x {batch} | {frames * batch} | {result['loaded_mib']:.0f} | "
            f"{result['peak_mib']:.0f} | {added:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
