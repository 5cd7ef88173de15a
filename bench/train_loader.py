"""Can the training input pipeline keep a GPU busy? Time P x K batch assembly on the CPU.

Builds the exact batches training uses (``PKSampler`` + ``TrainBatches``: 30-frame ordered
windows gathered from walks held in memory as uint8) and reports batches per second for one
process, optionally through a DataLoader with worker processes. Compare with the model's
training steps per second: the loader keeps the accelerator busy while its rate is higher.

usage: python bench/train_loader.py DATA_ROOT [--subjects 001-062] [--p 8 --k 8]
       [--frames 30] [--batches 200] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from gaitid.preprocess import to_network_input
from gaitid.training.config import BatchPipeline
from gaitid.training.data.opengait import load_dataset, parse_subject_spec
from gaitid.training.sampler import PKSampler
from gaitid.training.torch_data import TrainBatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--subjects", default=None)
    parser.add_argument("--p", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()

    t0 = time.perf_counter()
    walks = load_dataset(args.root, parse_subject_spec(args.subjects) if args.subjects else None)
    keys = sorted(walks)
    names = sorted({k.subject for k in keys})
    arrays = [np.ascontiguousarray(to_network_input(walks[k])) for k in keys]
    labels = [names.index(k.subject) for k in keys]
    megabytes = sum(a.nbytes for a in arrays) / 2**20
    print(
        f"loaded {len(arrays)} walks of {len(names)} subjects ({megabytes:.0f} MiB uint8) "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    for workers in args.workers:
        sampler = PKSampler(labels, args.p, args.k, seed=0)
        dataset = TrainBatches(arrays, labels, BatchPipeline(frames=args.frames), seed=0)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(0),
        )
        it = iter(loader)
        next(it)  # start workers outside the timing
        start = time.perf_counter()
        for _ in range(args.batches):
            frames, _ = next(it)
        elapsed = time.perf_counter() - start
        rate = args.batches / elapsed
        print(
            f"workers={workers}: {rate:.0f} batches/s ({1000 / rate:.2f} ms per "
            f"{args.p}x{args.k}x{args.frames} batch, {tuple(frames.shape)} uint8)"
        )


if __name__ == "__main__":
    main()
