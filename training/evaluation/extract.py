"""Extract evaluation features from walks with a PyTorch model, a checkpoint, or an ONNX file.

Every frame of every walk is used (no 30-frame window): walks of similar length are padded
into a batch and the network masks the padding through ``lengths``. A PyTorch model gives both
the part features (for the paper's part-wise distance) and the 256-d embedding; an ONNX export
carries only the embedding (the service contract), so evaluating it gives the embedding
distance alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gaitid.contract import DEFAULT_TEST_TIME_SHIFTS
from gaitid.cpu import int8_kernel_problem
from gaitid.errors import GaitidError
from gaitid.training.evaluation.embedding_cache import EmbeddingCache, model_digest
from gaitid.training.evaluation.protocols import FeatureSet
from gaitid.training.torch_data import eval_batches

if TYPE_CHECKING:
    import torch

    from gaitid.contract import ContractMetadata
    from gaitid.training.data.opengait import WalkKey

logger = logging.getLogger(__name__)


#: How often a long embedding run writes its cache (a ~1 MB file per thousand walks).
_CACHE_SAVE_EVERY_S = 60.0


class ModelFileError(GaitidError, ValueError):
    """A model file that is neither a training checkpoint nor an ONNX export."""


def load_eval_walks(
    root: Path,
    subjects: Sequence[str] | None = None,
    keep: Callable[[WalkKey], bool] | None = None,
) -> tuple[list[WalkKey], list[NDArray[np.uint8]]]:
    """Load walks (sorted by key; those ``keep`` accepts) cropped to the network's
    ``(T, 64, 44)``."""
    from gaitid.preprocess import to_network_input
    from gaitid.training.data.opengait import load_dataset

    walks = load_dataset(root, subjects, keep)
    keys = sorted(walks)
    return keys, [np.ascontiguousarray(to_network_input(walks[k])) for k in keys]


def load_route_walks(
    gallery_root: Path,
    probe_root: Path,
    subjects: Sequence[str] | None,
    gallery_conditions: Sequence[str],
) -> tuple[list[WalkKey], list[NDArray[np.uint8]]]:
    """:func:`load_eval_walks` with the probes read another way: the gallery walks
    (``gallery_conditions``) from ``gallery_root``, every other walk from ``probe_root`` (e.g.
    the clip route, ``gaitid clip-walks``). A probe walk missing there is not replaced by its
    clean twin: the protocol sees only what the other route gave."""
    chosen = set(gallery_conditions)
    gallery_keys, gallery_walks = load_eval_walks(
        gallery_root, subjects, lambda key: key.condition in chosen
    )
    probe_keys, probe_walks = load_eval_walks(
        probe_root, subjects, lambda key: key.condition not in chosen
    )
    pairs = sorted(
        zip([*gallery_keys, *probe_keys], [*gallery_walks, *probe_walks], strict=True),
        key=lambda pair: pair[0],
    )
    return [k for k, _w in pairs], [w for _k, w in pairs]


def _feature_set(
    keys: Sequence[WalkKey], embeddings: NDArray[np.float32], parts: NDArray[np.float32] | None
) -> FeatureSet:
    return FeatureSet(
        subjects=np.array([k.subject for k in keys]),
        conditions=np.array([k.condition for k in keys]),
        views=np.array([k.view for k in keys]),
        embeddings=embeddings,
        part_features=parts,
    )


def torch_features(
    model: torch.nn.Module,
    walks: Sequence[NDArray[np.uint8]],
    *,
    device: torch.device,
    batch_size: int = 8,
    shifts: str = DEFAULT_TEST_TIME_SHIFTS,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(embeddings [N, 256], part_features [N, P, D])`` of every walk, in eval mode.

    The embeddings average the test-time ``shifts`` as the exported graph does
    (``gaitid.model.test_time``), so a threshold calibrated here holds for the export; the
    part features are those of the frames as they are (also what ``training.embedding_fit``
    fits the service embedding on, with ``shifts="none"``).
    """
    import torch

    from gaitid.contract import shift_offsets
    from gaitid.model.test_time import ensemble_embedding

    offsets = shift_offsets(shifts)
    was_training = model.training
    model.eval()
    embeddings: list[NDArray[np.float32] | None] = [None] * len(walks)
    parts: list[NDArray[np.float32] | None] = [None] * len(walks)
    try:
        with torch.inference_mode():
            for indices, silhouettes, lengths in eval_batches(walks, batch_size):
                frames = torch.from_numpy(silhouettes).to(device)
                counts = torch.from_numpy(lengths).to(device)
                out = model(frames, counts)  # the first offset of every set is (0, 0)
                total = ensemble_embedding(
                    out.embedding,
                    lambda shifted: model(shifted, counts).embedding,  # noqa: B023 (used here)
                    frames,
                    offsets,
                )
                emb = total.float().cpu().numpy()
                part = out.part_features.float().cpu().numpy()
                for row, index in enumerate(indices):
                    embeddings[index], parts[index] = emb[row], part[row]
    finally:
        model.train(was_training)
    return np.stack(embeddings), np.stack(parts)  # type: ignore[arg-type]


def features_from_torch(
    model: torch.nn.Module,
    keys: Sequence[WalkKey],
    walks: Sequence[NDArray[np.uint8]],
    *,
    device: torch.device,
    batch_size: int = 8,
    shifts: str = DEFAULT_TEST_TIME_SHIFTS,
) -> FeatureSet:
    """Part features and embeddings of every walk from a PyTorch network (eval mode); the
    embeddings average the test-time ``shifts`` (:func:`torch_features`)."""
    embeddings, parts = torch_features(
        model, walks, device=device, batch_size=batch_size, shifts=shifts
    )
    return _feature_set(keys, embeddings, parts)


def features_from_onnx(
    path: Path,
    keys: Sequence[WalkKey],
    walks: Sequence[NDArray[np.uint8]],
    *,
    batch_size: int = 8,
    cache: EmbeddingCache | None = None,
) -> FeatureSet:
    """Embeddings of every walk from an ONNX export (no part features in the graph); with a
    ``cache``, only the walks it does not hold for this file are embedded."""
    return _onnx_features(path, keys, walks, batch_size, cache)[0]


def _onnx_features(
    path: Path,
    keys: Sequence[WalkKey],
    walks: Sequence[NDArray[np.uint8]],
    batch_size: int,
    cache: EmbeddingCache | None = None,
) -> tuple[FeatureSet, ContractMetadata]:
    """:func:`features_from_onnx` and what the model's metadata says."""
    import onnxruntime as ort

    from gaitid.contract import (
        INPUT_LENGTHS,
        INPUT_SILHOUETTES,
        OUTPUT_EMBEDDING,
        ContractError,
        read_metadata,
    )

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = session.get_modelmeta().custom_metadata_map
    try:  # the same contract check the service applies before serving a model
        meta = read_metadata(raw)
    except ContractError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    if (problem := int8_kernel_problem(raw)) is not None:  # figures of another function
        raise ModelFileError(f"{path}: {problem}")
    known: dict[str, NDArray[np.float32]] = {}
    if cache is None:
        digests, todo = [str(i) for i in range(len(walks))], list(range(len(walks)))
    else:
        model = model_digest(path)
        digests, known, todo = cache.split(model, walks)
        logger.info("%s: %d of %d walks cached", path.name, len(walks) - len(todo), len(walks))
    computed: dict[str, NDArray[np.float32]] = {}
    saved = time.monotonic()
    for indices, silhouettes, lengths in eval_batches([walks[i] for i in todo], batch_size):
        (emb,) = session.run(
            [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
        )
        for row, index in enumerate(indices):
            computed[digests[todo[index]]] = np.asarray(emb[row], dtype=np.float32)
        if cache is not None and time.monotonic() - saved > _CACHE_SAVE_EVERY_S:
            cache.store(model, {**known, **computed})  # a run cut off keeps what it embedded
            saved = time.monotonic()
    if cache is not None and computed:
        cache.store(model, {**known, **computed})
    everything = {**known, **computed}
    embeddings = np.stack([everything[digest] for digest in digests])
    return _feature_set(keys, embeddings, None), meta


def features_from_file(
    path: Path,
    keys: Sequence[WalkKey],
    walks: Sequence[NDArray[np.uint8]],
    *,
    device: str = "cpu",
    batch_size: int = 8,
    shifts: str | None = None,
    cache: EmbeddingCache | None = None,
) -> tuple[FeatureSet, Mapping[str, Any]]:
    """Features from a checkpoint (``.pt``) or an ONNX file; also returns what the file says,
    with the test-time shift set the embeddings average (``test_time_shifts``): an ONNX
    file's own (its graph holds it; ``shifts`` must be ``None`` or the same), a checkpoint's
    ``shifts`` (``None``: the default set, the one an export writes). ``cache`` serves ONNX
    files only (a checkpoint's part features are not kept)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if path.suffix == ".onnx":
        features, contract = _onnx_features(path, keys, walks, batch_size, cache)
        if shifts is not None and shifts != contract.test_time_shifts:
            raise ModelFileError(
                f"{path} averages the test-time shift set {contract.test_time_shifts!r} in its "
                f"graph, not {shifts!r}: the set of an ONNX file is chosen when it is exported"
            )
        return features, {"format": "onnx", "test_time_shifts": contract.test_time_shifts}
    if magic[:2] != b"PK" and path.suffix not in {".pt", ".pth", ".ckpt"}:
        raise ModelFileError(
            f"{path} is neither an ONNX file (.onnx) nor a PyTorch checkpoint (.pt, .pth, .ckpt)"
        )
    import torch

    from gaitid.model.export import CheckpointError, load_checkpoint_model

    if device not in {"cpu", "cuda"} or (device == "cuda" and not torch.cuda.is_available()):
        raise ModelFileError(
            f"device {device!r} is not available; allowed: cpu, or cuda with a GPU"
        )
    try:
        model, meta = load_checkpoint_model(path)
    except CheckpointError as exc:
        raise ModelFileError(str(exc)) from exc
    torch_device = torch.device(device)
    model.to(torch_device)
    chosen = shifts or DEFAULT_TEST_TIME_SHIFTS
    try:
        features = features_from_torch(
            model, keys, walks, device=torch_device, batch_size=batch_size, shifts=chosen
        )
    except ValueError as exc:  # an unknown shift set
        raise ModelFileError(str(exc)) from exc
    return features, {"format": "checkpoint", **dict(meta), "test_time_shifts": chosen}
