"""What the test-time shift set costs per walk: served ONNX files side by side, one process.

Each file runs as the service runs it (``served_shape.session``: graph optimisation ALL, no
spinning), batch 1, at T frames, on ``--threads`` threads; the median of ``--repeats`` runs of
random binary frames (latency does not depend on their values). Printed: ms per walk
and the ratio to the first file, with each file's ``test_time_shifts``. The shift set
``cross`` runs the network five times (``gaitid.model.test_time``), so about 5x is expected;
what is measured is how much of it the service pays. Usage::

    .venv/bin/python bench/shift_latency.py --models ../runs/ship/none.onnx \\
        models/gaitid-lmgcs.onnx models/gaitid-lmgcs.int8.onnx
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from served_shape import median_ms, session  # bench/ is on sys.path when this script runs

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, read_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="ONNX files")
    parser.add_argument("--frames", type=int, nargs="+", default=[80, 30])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    sessions = {path: session(path, args.threads, spinning=False) for path in args.models}
    shifts = {
        path: read_metadata(s.get_modelmeta().custom_metadata_map).test_time_shifts
        for path, s in sessions.items()
    }
    rng = np.random.default_rng(0)
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, batch 1\n")
    print("| T | model | test_time_shifts | ms/walk | vs first |")
    print("|---:|---|---|---:|---:|")
    rows = []
    for frames in args.frames:
        x = (rng.random((1, frames, 64, 44)) > 0.5).astype(np.float32)
        feeds = {INPUT_SILHOUETTES: x, INPUT_LENGTHS: np.array([frames], np.int64)}
        first = None
        for path, sess in sessions.items():
            ms = median_ms(lambda s=sess, f=feeds: s.run(None, f), args.repeats)
            first = first or ms
            rows.append({"frames": frames, "model": path.name, "shifts": shifts[path], "ms": ms})
            print(f"| {frames} | {path.name} | {shifts[path]} | {ms:.1f} | {ms / first:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
