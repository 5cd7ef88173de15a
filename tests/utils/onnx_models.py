"""A small real ONNX model for tests that need one (service, evaluation, export checks).

``export_tiny_onnx`` exports the seeded random-init ``tiny`` LMGCS once per source version:
the result is cached under ``<repo>/.cache/test-onnx/`` keyed by a hash of the model sources
and the torch/onnx versions, so only the first test session after a model change pays the
~10 s export; later calls copy the cached file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "test-onnx"
TINY_SEED = 0


def _fingerprint() -> str:
    """Hash of everything that changes the exported bytes: model sources and tool versions."""
    import onnx
    import torch

    digest = hashlib.sha256(f"{torch.__version__}|{onnx.__version__}|{TINY_SEED}".encode())
    for source in sorted((REPO_ROOT / "model").rglob("*.py")):
        digest.update(source.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(source.read_bytes())
    digest.update((REPO_ROOT / "gaitid" / "contract.py").read_bytes())
    return digest.hexdigest()[:16]


def export_tiny_onnx(out_dir: Path) -> Path:
    """Write the seeded random-init ``tiny`` model to ``out_dir/tiny.onnx`` and return it."""
    from gaitid.model.export import export_random_init

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "tiny.onnx"
    cached = CACHE_DIR / f"tiny-{_fingerprint()}.onnx"
    if not cached.is_file():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        # export to a private temp name, then rename: parallel test runs never see half a file
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, prefix=".tiny-", suffix=".onnx")
        os.close(fd)
        try:
            export_random_init("tiny", Path(tmp), seed=TINY_SEED)
            os.replace(tmp, cached)
        finally:
            Path(tmp).unlink(missing_ok=True)
    shutil.copyfile(cached, target)
    return target


def with_metadata(src: Path, dst: Path, **props: str) -> Path:
    """A copy of the model at ``src`` at ``dst`` with ``props`` added to its metadata
    (replacing keys it has), checked against the contract as an export would be."""
    import onnx

    from gaitid.model.quantize import rewrite_metadata

    shutil.copyfile(src, dst)
    meta = {p.key: p.value for p in onnx.load(str(dst)).metadata_props}
    rewrite_metadata(dst, {**meta, **props})
    return dst
