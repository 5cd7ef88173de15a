"""Export an LMGCS network to the ONNX model the service runs, and read training checkpoints.

The graph follows ``gaitid.contract``: inputs ``silhouettes`` float32 ``[N, T, 64, 44]`` and
``lengths`` int64 ``[N]``, output ``embedding`` float32 ``[N, 256]`` (L2-normalised), with N
and T dynamic and no classifier inside. We use the torch.export-based ONNX exporter
(``dynamo=True``): it checks that no shape was specialised to the example input, which the old
tracing exporter would silently bake in.

``fp16=True`` runs the whole network in float16 (weights stored as float16, half the file size)
while keeping float32 inputs and output, so the service feeds both variants the same way; it is
meant for GPU execution providers.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gaitid import __version__
from gaitid.contract import (
    DEFAULT_TEST_TIME_SHIFTS,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    MODEL_NAME,
    OUTPUT_EMBEDDING,
    TEST_TIME_SHIFTS_KEY,
    THRESHOLD_KEYS,
    build_metadata,
    shift_offsets,
)
from gaitid.errors import GaitidError
from gaitid.model.config import VARIANTS, LMGCSConfig
from gaitid.model.e3d_frames import FrameMajorE3D
from gaitid.model.e3d_tiled import TiledE3D
from gaitid.model.ensemble import EnsembleError, GaitNetwork, LMGCSEnsemble
from gaitid.model.layers.conv3d_as_2d import stack_time_in_conv3d
from gaitid.model.lmgcs import LMGCS, EmbeddingOnly
from gaitid.model.registry import create_model

logger = logging.getLogger(__name__)

#: Opset of the exported graph (ONNX Runtime >= 1.14 runs it).
DEFAULT_OPSET = 18
#: How the backbone's 3x3x3 convolutions are written into the graph (all exact):
#: ``conv3d`` as they are; ``time-stacked`` as 2-D convs over time-stacked channels, each
#: conv on its own (``model.layers.conv3d_as_2d``); ``frame-major`` the same convs with the
#: whole backbone kept frame-major, so that stacking needs no transposes (``model.e3d_frames``,
#: the default, fastest in ONNX Runtime); ``tiled`` as sums of 2-D convs over frames tiled
#: down the height (``model.e3d_tiled``). BENCHMARKS.md compares them.
BackboneLayout = Literal["conv3d", "time-stacked", "tiled", "frame-major"]
BACKBONE_LAYOUTS: tuple[BackboneLayout, ...] = ("conv3d", "time-stacked", "tiled", "frame-major")


class CheckpointError(GaitidError, ValueError):
    """A checkpoint file that is not in the trainer's format."""


#: The key of an ensemble checkpoint's list of members (each ``model_config``, ``num_classes``,
#: ``labels``, ``meta``).
ENSEMBLE_MEMBERS_KEY = "members"


class _HalfPrecision(nn.Module):
    """float32 in -> network in float16 -> float32 out (the contract's I/O stays float32)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, silhouettes: Tensor, lengths: Tensor) -> Tensor:
        return self.inner(silhouettes.half(), lengths).float()


def variant_name(config: LMGCSConfig) -> str:
    """The name of the variant ``config`` equals (ignoring the classifier), else ``custom``."""
    plain = config.model_copy(update={"num_classes": 0})
    for name, variant in VARIANTS.items():
        if variant == plain:
            return name
    return "custom"


def network_variant(model: GaitNetwork) -> str:
    """:func:`variant_name` of a network; an ensemble's members' joined by ``+`` (``lite+lite``)."""
    if isinstance(model, LMGCSEnsemble):
        return "+".join(variant_name(config) for config in model.member_configs)
    return variant_name(model.config)


def model_config_json(model: GaitNetwork) -> str:
    """The ``model_config`` metadata of an export: the network's config, or an ensemble's list
    of member configs."""
    if isinstance(model, LMGCSEnsemble):
        configs: object = [config.model_dump() for config in model.member_configs]
    else:
        configs = model.config.model_dump()
    return json.dumps(configs, sort_keys=True)


def describe_embedding(model: GaitNetwork) -> str:
    """How the model's 256-d embedding was made, for the ONNX metadata (``embedding`` key)."""
    if model.embedding_head.is_fitted:
        return "pca+within-class whitening of part-normalised part features (fitted)"
    return "random projection of part-normalised part features (not fitted)"


def export_onnx(
    model: GaitNetwork,
    out: Path,
    *,
    metadata: dict[str, str],
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    backbone: BackboneLayout = "frame-major",
    shifts: str = DEFAULT_TEST_TIME_SHIFTS,
) -> Path:
    """Write ``model``'s embedding graph to ``out`` (ONNX) and return the path.

    The model is copied and put in eval mode; the caller's module is left untouched.
    ``backbone`` chooses how the 3x3x3 convolutions are written (:data:`BackboneLayout`); ONNX
    Runtime runs its 3-D convolutions far slower than 2-D ones, hence the default. ``shifts``
    is the test-time shift set the graph averages over (``gaitid.model.test_time``), recorded
    in the metadata as ``test_time_shifts``: PyTorch exports one pass and
    ``gaitid.model.shift_graph`` writes the shifted copies around it (so ``gaitid quantize``
    can take that pass back out). The exporter's per-node debugging metadata (stack traces
    with this machine's source paths) is dropped: no local path ships in a model file.
    """
    if backbone not in BACKBONE_LAYOUTS:
        raise ValueError(f"backbone layout {backbone!r} is not one of {BACKBONE_LAYOUTS}")
    shift_offsets(shifts)  # an unknown set fails before the export's minute of work
    import onnx

    from gaitid.model.shift_graph import ensemble_graph

    props = build_metadata(
        {**metadata, TEST_TIME_SHIFTS_KEY: shifts},
        model_config_json=model_config_json(model),
        fp16=fp16,
    )
    props.setdefault("embedding", describe_embedding(model))
    network = copy.deepcopy(model).cpu().float().eval()
    for member in network.networks if isinstance(network, LMGCSEnsemble) else [network]:
        if backbone == "tiled":
            member.backbone = TiledE3D(member.backbone)  # type: ignore[assignment]
        elif backbone == "frame-major":
            member.backbone = FrameMajorE3D(member.backbone)  # type: ignore[assignment]
    graph: nn.Module = EmbeddingOnly(network).eval()
    if backbone == "time-stacked":
        stack_time_in_conv3d(graph)
    if fp16:
        graph = _HalfPrecision(graph).eval()
    # example: two walks of different lengths, so the padded path is what gets captured
    silhouettes = torch.rand(2, 5, FRAME_HEIGHT, FRAME_WIDTH)
    lengths = torch.tensor([5, 3], dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1)
    frames = torch.export.Dim("frames", min=1)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            graph,
            (silhouettes, lengths),
            None,
            input_names=[INPUT_SILHOUETTES, INPUT_LENGTHS],
            output_names=[OUTPUT_EMBEDDING],
            dynamic_shapes=({0: batch, 1: frames}, {0: batch}),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto = ensemble_graph(proto, shifts)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    logger.info("exported %s (%s, fp16=%s) to %s", props["variant"], MODEL_NAME, fp16, out)
    return out


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, deprecation notices).

    Restores the torch.onnx logger level afterwards; real export errors still raise.
    """
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            yield
    finally:
        onnx_logger.setLevel(level)


def export_random_init(
    variant: str,
    out: Path,
    *,
    seed: int = 0,
    fp16: bool = False,
    backbone: BackboneLayout = "frame-major",
    shifts: str = DEFAULT_TEST_TIME_SHIFTS,
) -> Path:
    """Export a freshly initialised ``variant`` (seeded), for tests and latency work."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = create_model(variant)
    finally:
        torch.random.set_rng_state(generator_state)
    metadata = {
        "variant": variant,
        "version": f"{__version__}+random-init.seed{seed}",
        "training_data": "none (random initialisation)",
    }
    return export_onnx(model, out, metadata=metadata, fp16=fp16, backbone=backbone, shifts=shifts)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The one reader of checkpoint files (the trainer's and the shipped weights): a dict with
    at least a ``model`` state dict, loaded onto the CPU with ``weights_only=True`` (no code
    runs from a checkpoint; the numpy arrays and paths of a resume state are allow-listed).
    ``gaitid.training.checkpoint.load_checkpoint`` adds the resume checks; ``load_checkpoint_model``
    rebuilds the network."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} does not exist")
    try:
        with torch.serialization.safe_globals(_checkpoint_safe_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/runtime errors of many types here
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict")
    if "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a gaitid checkpoint (no 'model' key)")
    return checkpoint


def load_checkpoint_model(path: Path) -> tuple[GaitNetwork, dict[str, Any]]:
    """Rebuild the network saved by the trainer; returns ``(model in eval mode, checkpoint)``.

    The trainer writes ``torch.save({"model": state_dict, "model_config": config dict,
    "num_classes": K, "meta": {...}, ...})``, read by :func:`read_checkpoint` and built by
    :func:`checkpoint_model`.
    """
    checkpoint = read_checkpoint(path)
    return checkpoint_model(checkpoint, path), checkpoint


def checkpoint_model(checkpoint: dict[str, Any], source: Path | str) -> GaitNetwork:
    """The network (in eval mode) of a checkpoint dict already in memory (a file's, or one
    computed, like an average of checkpoints); weights must match the config exactly (strict
    load). ``source`` names it in errors. A checkpoint with ``members`` (``gaitid ensemble``)
    is an :class:`LMGCSEnsemble`: one ``model_config`` and ``num_classes`` per member."""
    if ENSEMBLE_MEMBERS_KEY in checkpoint:
        members = checkpoint[ENSEMBLE_MEMBERS_KEY]
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            raise CheckpointError(f"checkpoint {source}: members must be a list of dicts")
        configs = [_member_config(m, f"{source} member {i}") for i, m in enumerate(members)]
        try:
            model: GaitNetwork = LMGCSEnsemble(configs)
        except EnsembleError as exc:
            raise CheckpointError(f"checkpoint {source}: {exc}") from exc
    else:
        model = LMGCS(_member_config(checkpoint, source))
    if "model" not in checkpoint:
        raise CheckpointError(f"checkpoint {source} lacks its weights ('model')")
    try:
        model.load_state_dict(checkpoint["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {source} do not fit its model_config: {exc}") from exc
    return model.eval()


def _member_config(checkpoint: dict[str, Any], source: Path | str) -> LMGCSConfig:
    """The network config of a checkpoint (or of one member of an ensemble checkpoint)."""
    missing = [key for key in ("model_config", "num_classes") if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"checkpoint {source} lacks {missing}; expected keys model, model_config, "
            "num_classes, meta (the format `gaitid train` writes)"
        )
    return LMGCSConfig.model_validate(
        {**checkpoint["model_config"], "num_classes": int(checkpoint["num_classes"])}
    )


#: Training-config keys that hold local paths: left out of shipped weights.
_LOCAL_PATH_KEYS = ("output_dir", "init")
_LOCAL_DATA_KEYS = ("root", "partition", "clip_walks")


def member_description(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a weights file keeps of one network's checkpoint besides its weights and meta:
    ``model_config``, ``num_classes``, ``labels`` and the recipe it was trained with, the
    recipe without local paths (data root, partition, run folder, init)."""
    # a run's checkpoint holds its config; a weights file re-exported holds its recipe
    config = dict(checkpoint.get("config") or checkpoint.get("recipe") or {})
    recipe = {k: v for k, v in config.items() if k not in _LOCAL_PATH_KEYS}
    if isinstance(recipe.get("data"), dict):
        recipe["data"] = {k: v for k, v in recipe["data"].items() if k not in _LOCAL_DATA_KEYS}
    return {
        "model_config": dict(checkpoint["model_config"]),
        "num_classes": int(checkpoint["num_classes"]),
        "labels": list(checkpoint.get("labels") or []),
        "recipe": recipe,
    }


def write_weights(
    model: GaitNetwork, checkpoint: dict[str, Any], out: Path, metadata: dict[str, str]
) -> Path:
    """Write the weights-only file that ships beside the ONNX model (for fine-tuning).

    It holds what ``load_checkpoint_model`` and a training config's ``init`` read (``model``,
    ``model_config``, ``num_classes``, ``meta``) plus the recipe it was trained with, without
    optimiser or RNG state and without any local path (data root, partition, run folder); an
    ensemble's holds its members' descriptions instead (:func:`member_description`).
    """
    meta = dict(checkpoint.get("meta") or {})
    meta.update({k: metadata[k] for k in ("variant", "version", "training_data")})
    if TEST_TIME_SHIFTS_KEY in metadata:  # the embedding function its thresholds hold for
        meta[TEST_TIME_SHIFTS_KEY] = metadata[TEST_TIME_SHIFTS_KEY]
    for key in itertools.chain.from_iterable(THRESHOLD_KEYS):  # thresholds and their records
        if key in metadata:
            meta[key] = metadata[key]
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state: dict[str, Any] = {"model": weights, "meta": meta}
    if isinstance(model, LMGCSEnsemble):
        state[ENSEMBLE_MEMBERS_KEY] = [
            {**member_description(member), "meta": dict(member.get("meta") or {})}
            for member in checkpoint[ENSEMBLE_MEMBERS_KEY]
        ]
    else:
        state.update(member_description(checkpoint))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def _checkpoint_safe_globals() -> list[Any]:
    """Non-tensor types a trainer checkpoint legitimately holds (RNG states, config paths)."""
    import pathlib

    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # type: ignore[attr-defined]
    return [
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
        *(type(np.dtype(code)) for code in ("u4", "i8", "f8", "f4", "u1", "b1", "i4")),
        pathlib.PosixPath,
        pathlib.PurePosixPath,
        pathlib.WindowsPath,
        pathlib.PureWindowsPath,
    ]
