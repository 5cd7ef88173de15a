"""Embeddings of walks by an ONNX file, kept on disk between runs of the shipping recipe.

Shipping a model embeds the same held-out walks with the same file again and again: its
rank-1 and open-set calibration, the clip route's calibration (whose clean gallery and clean
twins are those walks once more), ``gaitid quantize``'s threshold transfer (the fp32 file and
the int8 file on the same walks) and the int8 file's rank-1. With five test-time passes a
walk, each repeat of the 063-074 walks costs 10-15 minutes of a 2-core machine. A cache
directory given to each of those commands (``--cache``) embeds every walk once per file.

An entry is keyed by what determines it and nothing else: the SHA-256 of the model's graph
and weights (the ONNX file without its metadata, which ``gaitid export --threshold-from`` and
``gaitid quantize`` rewrite after the embeddings were taken) and of the walk's pixels (shape
and uint8 values). Paths, subject names and the order of walks do not enter it, so a renamed
copy of a file or a walk reached through another root hits the same entry, and a re-exported
or re-quantised network (other weights) never sees an older one's embeddings.
Embeddings do not depend on the walks batched beside them (the network masks padding through
``lengths``; ``gaitid.contract``), so walks embedded in batches of 8 serve a later batch-1
run; the two agree to float rounding (~1e-7), not to the bit.

One file per model, ``<model digest>.npz`` (the walks' digests and their embeddings),
rewritten whole through a temporary file and a rename when a run adds walks: a reader never
sees half a file, and a corrupt or foreign file is ignored (recomputed), never trusted. Two runs
adding to one network's file at once: the last write wins, and the other's walks are embedded
again by a later run (nothing wrong is ever read).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gaitid.contract import EMBEDDING_DIM

logger = logging.getLogger(__name__)


def model_digest(path: Path) -> str:
    """The SHA-256 of an ONNX model's graph and weights, its metadata left out."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def walk_digest(walk: NDArray[np.uint8]) -> str:
    """The SHA-256 of a walk's shape and pixels: equal walks, equal digests."""
    pixels = np.ascontiguousarray(walk, dtype=np.uint8)
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """The embeddings one directory holds, per network digest (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, model: str) -> Path:
        return self.root / f"{model}.npz"

    def load(self, model: str) -> dict[str, NDArray[np.float32]]:
        """Every embedding stored for the model, by walk digest; empty when none (or when the
        file cannot be read as this cache's: it is then recomputed and replaced)."""
        path = self._path(model)
        if not path.is_file():
            return {}
        try:
            stored = np.load(path, allow_pickle=False)
            if not isinstance(stored, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with stored:
                digests, vectors = stored["digests"], stored["embeddings"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("embedding cache %s unreadable (%s): embedding again", path, exc)
            return {}
        if (
            digests.ndim != 1
            or vectors.shape != (digests.shape[0], EMBEDDING_DIM)
            or not np.isfinite(vectors).all()
        ):
            logger.warning("embedding cache %s holds no valid embeddings: embedding again", path)
            return {}
        return {str(d): v for d, v in zip(digests, vectors.astype(np.float32), strict=True)}

    def store(self, model: str, embeddings: dict[str, NDArray[np.float32]]) -> None:
        """Write ``embeddings`` (by walk digest) as the model's whole entry, atomically."""
        if not embeddings:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        digests = np.array(sorted(embeddings))
        vectors = np.stack([embeddings[d] for d in digests]).astype(np.float32)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, digests=digests, embeddings=vectors)
            os.replace(tmp, self._path(model))
        finally:
            Path(tmp).unlink(missing_ok=True)

    def split(
        self, model: str, walks: Sequence[NDArray[np.uint8]]
    ) -> tuple[list[str], dict[str, NDArray[np.float32]], list[int]]:
        """Each walk's digest, the stored embeddings, and the indices of the walks to embed
        (one of each set of equal walks)."""
        digests = [walk_digest(walk) for walk in walks]
        known = self.load(model)
        missing: dict[str, int] = {}
        for index, digest in enumerate(digests):
            if digest not in known:
                missing.setdefault(digest, index)
        return digests, known, list(missing.values())
