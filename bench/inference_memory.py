"""Peak memory of one ONNX Runtime run of a model, by batch shape.

Each shape runs in a fresh subprocess that loads the model through the service's
``Embedder`` (VmHWM after loading), embeds one batch of random walks of that shape, and
reports the process's peak resident memory (VmHWM, Linux ``/proc``); then embeds it
``--runs - 1`` more times and reports the peak again. The difference is what inference adds
to a server's memory: the inference part of the ceiling stated in ``service/README.md``. The
repeated runs matter: with ONNX Runtime's memory-reuse plan (which the service turns off,
``session_options``) a second run of the same shape could grow the process as much again.

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

model, frames, batch, runs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
embedder = Embedder(model)
loaded = hwm()
rng = np.random.default_rng(0)
walks = [rng.integers(0, 256, (frames, 64, 44), dtype=np.uint8) for _ in range(batch)]
embedder.embed_batch(walks)
first = hwm()
for _ in range(runs - 1):
    embedder.embed_batch(walks)
print(json.dumps({"loaded_mib": loaded, "peak_mib": first, "peak_after_runs_mib": hwm()}))
"""


def measure(model: Path, frames: int, batch: int, runs: int = 3) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model), str(frames), str(batch), str(runs)],
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
    parser.add_argument("--runs", type=int, default=3, help="runs of each shape (>= 1)")
    args = parser.parse_args(argv)
    print(
        "| frames x walks | padded frames | after loading (MiB) | peak (MiB) | run adds (MiB) "
        f"| after {args.runs} runs (MiB) |"
    )
    print("|---|---|---|---|---|---|")
    for shape in args.shapes:
        frames, batch = (int(v) for v in shape.split("x"))
        result = measure(args.model, frames, batch, args.runs)
        added = result["peak_mib"] - result["loaded_mib"]
        after = result["peak_after_runs_mib"] - result["loaded_mib"]
        print(
            f"| {frames} x {batch} | {frames * batch} | {result['loaded_mib']:.0f} | "
            f"{result['peak_mib']:.0f} | {added:.0f} | {after:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
