"""What a shorter walk costs with one template a person, clean silhouettes only.

``bench/clip_identity.py`` splits the clip route's acceptance gap into frames, resampling and
segmentation; with one template the frames step is the largest (the person is partly outside
the picture at the clip's start and end). This bench asks what that step is, on the same
probes and gallery (nm-01 at 090, clean), with each probe cut to the number of frames its
clip kept (read from a ``clip_identity.py --out`` JSON):

- *middle*: that many consecutive frames around the walk's middle (as the clip keeps a run);
- *spread*: that many frames spread evenly over the whole walk (same span, gaps between);
- and both again with a length-normalised embedding: the mean of the unit embeddings of
  ``--window``-frame windows every ``--stride`` frames, renormalised.

Each embedding function is judged at the threshold where its clean walks are accepted as
often as the model's own function accepts them at the model's threshold, so two functions
with different score scales compare at equal clean acceptance. Usage::

    .venv/bin/python bench/walk_length.py --model models/gaitid-lmgcs.onnx \\
        --probes ../runs/bench/clip-identity-wide.json --data ../shared/data/casia-b-train
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*

from bench.clip_identity import CONDITIONS, GALLERY, Embedder, network_input

Embedding = Callable[[NDArray[np.uint8]], NDArray[np.float32]]


def windowed(embed: Embedding, window: int, stride: int) -> Embedding:
    """``embed`` made length-normalised: the renormalised mean over fixed-length windows."""

    def function(walk: NDArray[np.uint8]) -> NDArray[np.float32]:
        frames = len(walk)
        if frames <= window:
            return embed(walk)
        starts = list(range(0, frames - window + 1, stride))
        if starts[-1] != frames - window:
            starts.append(frames - window)
        mean = np.mean([embed(walk[s : s + window]) for s in starts], axis=0)
        return np.asarray(mean / np.linalg.norm(mean), np.float32)

    return function


def cuts(walk: NDArray[np.uint8], length: int) -> dict[str, NDArray[np.uint8]]:
    """The clean walk whole, its middle ``length`` frames, and ``length`` frames spread
    evenly over it."""
    frames = len(walk)
    start = (frames - length) // 2
    spread = np.round(np.linspace(0, frames - 1, length)).astype(int)
    return {"whole": walk, "middle": walk[start : start + length], "spread": walk[spread]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX model file")
    parser.add_argument("--probes", type=Path, required=True, help="clip_identity.py --out JSON")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/casia-b-train"))
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--stride", type=int, default=10)
    args = parser.parse_args(argv)

    rows = [r for r in json.loads(args.probes.read_text())["probes"] if r["frames"].get("kept")]
    embed = Embedder(args.model)
    threshold = float(embed.meta.default_threshold or 0.5)
    functions: dict[str, Embedding] = {
        "whole walk": embed,
        f"mean of {args.window}-frame windows": windowed(embed, args.window, args.stride),
    }
    npzs = {s: np.load(args.data / f"{s}.npz") for s in dict.fromkeys(r["subject"] for r in rows)}
    gallery_walks = {s: network_input(npz["/".join(GALLERY)]) for s, npz in npzs.items()}
    probe_walks = [  # the cuts of each row's walk, in the rows' order
        cuts(
            network_input(npzs[r["subject"]][f"{CONDITIONS[r['condition']]}/{r['view']}"]),
            r["frames"]["kept"],
        )
        for r in rows
    ]

    print(f"# {args.model.name}, {len(rows)} probes, threshold {threshold:.4f}")
    print(
        "| embedding | threshold used | accepted whole | middle cut | spread cut "
        "| cosine drop, middle |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    clean_rate = None
    for name, function in functions.items():
        gallery = {subject: function(walk) for subject, walk in gallery_walks.items()}
        scores: dict[str, list[float]] = {"whole": [], "middle": [], "spread": []}
        for r, probe in zip(rows, probe_walks, strict=True):
            for cut, walk in probe.items():
                scores[cut].append(float(function(walk) @ gallery[r["subject"]]))
        whole = np.array(scores["whole"])
        if clean_rate is None:  # the model's own function at its calibrated threshold
            used, clean_rate = threshold, float(np.mean(whole >= threshold))
        else:  # another function at equal clean acceptance
            used = float(np.quantile(whole, 1 - clean_rate))
        rates = {cut: 100 * float(np.mean(np.array(s) >= used)) for cut, s in scores.items()}
        drop = float(np.mean(whole - np.array(scores["middle"])))
        print(
            f"| {name} | {used:.4f} | {rates['whole']:.1f} | {rates['middle']:.1f} | "
            f"{rates['spread']:.1f} | {drop:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
