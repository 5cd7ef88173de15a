"""Run independent per-walk jobs in-process or in a pool of worker processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")


def parallel_map(
    fn: Callable[[JobT], ResultT], jobs: Sequence[JobT], workers: int
) -> Iterator[ResultT]:
    """Yield ``fn(job)`` for every job, in order for one worker, as completed for more.

    Pools use the ``spawn`` start method: forking a process that has loaded OpenCV or torch
    threads is unsafe. ``fn`` and the jobs must therefore be picklable (module-level).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if workers == 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    chunksize = max(1, min(8, len(jobs) // (4 * workers)))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(fn, jobs, chunksize=chunksize)
