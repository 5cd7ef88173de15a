"""Validated training configuration, read from one YAML file.

Every section rejects unknown keys (``extra="forbid"``): a misspelt setting is an error, never a
silently ignored default. Relative paths in the file are resolved against the directory of the
YAML file itself, never the current working directory, so ``gaitid train configs/x.yaml`` means
the same thing from anywhere.

The schedule fields follow the paper's Table II / section IV-B (Adam 1e-4, multi-step decay);
``init_from`` + ``freeze`` express a second training stage such as the paper's "subnetwork B"
(see ``configs/casia-b-paper-stage-b.yaml`` for how we read it).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gaitid.errors import GaitidError
from gaitid.training.augment import AugmentConfig


class ConfigError(GaitidError, ValueError):
    """A training config file that cannot be read or does not validate."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchPipeline(_Section):
    """How a training walk becomes a row of a batch: the settings ``TrainBatches`` takes.

    The data section of the config *is* one (``DataConfig`` extends it), so the trainer hands
    ``config.data`` over whole: a new window or augmentation setting is a field here (or in
    ``AugmentConfig``) and the code that reads it in ``TrainBatches``, nothing else. Resuming
    keeps every data setting fixed except ``DataConfig.RESUME_FREE``, so a new field is
    fixed on resume without being listed anywhere.
    """

    frames: int = Field(default=30, ge=1)  # ordered window length per walk in training (paper IV-B)
    # segmentation-style degradation of training walks (training.augment; off by default)
    augment: AugmentConfig = AugmentConfig()
    # share of training walks mirrored left to right, every frame of the window (OpenGait
    # GaitBase's RandomHorizontalFlip): a walk seen from the other side at the same angle
    flip: float = Field(default=0.0, ge=0, le=1)


class DataConfig(BatchPipeline):
    """Where the walks come from, which subjects train / validate, and how batches are cut."""

    #: Settings a resume may change: they decide how fast batches come or what is validated,
    #: never which batches are drawn. Every other data setting must match the checkpoint.
    RESUME_FREE: ClassVar[frozenset[str]] = frozenset({"workers", "val_subjects"})

    root: Path  # OpenGait layout ROOT/<subject>/<condition>/<view>/<view>.pkl
    partition: Path | None = None  # OpenGait JSON {"TRAIN_SET", "TEST_SET"}
    train_subjects: list[str] | None = None  # alternative to partition (explicit list)
    val_subjects: list[str] | None = None  # evaluated every eval_every iterations
    workers: int = Field(default=0, ge=0)  # DataLoader worker processes (0 = main process)
    min_frames: int = Field(default=1, ge=1)  # walks shorter than this are left out of training
    # training subjects' walks re-read through camera clips (`gaitid clip-walks` output, same
    # layout): each is one more walk of its subject, so the sampler mixes the two readings
    clip_walks: Path | None = None

    @model_validator(mode="after")
    def _one_subject_source(self) -> DataConfig:
        if self.partition is not None and self.train_subjects is not None:
            raise ValueError("give either data.partition or data.train_subjects, not both")
        return self


class ModelSection(_Section):
    """The network: a named variant of ``model.create_model`` plus field overrides."""

    variant: Literal["paper", "paper-oumvlp", "lite", "tiny"] = "paper"
    overrides: dict[str, Any] = Field(default_factory=dict)  # LMGCSConfig fields

    @model_validator(mode="after")
    def _overrides_build_a_network(self) -> ModelSection:
        """A misspelt or impossible override fails when the config loads, not after the data."""
        from gaitid.model.config import VARIANTS, LMGCSConfig

        fields = {**VARIANTS[self.variant].model_dump(), **self.overrides}
        try:
            LMGCSConfig.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"model.overrides do not give a valid network: {problems}") from None
        return self


class SamplerConfig(_Section):
    """P identities x K walks per batch (paper: 8 x 8 on CASIA-B, 32 x 8 on OU-MVLP)."""

    p: int = Field(default=8, ge=2)  # at least two identities, or no triplet has a negative
    k: int = Field(default=8, ge=1)


class OptimizerConfig(_Section):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)  # the paper's "momentum of 0.9" is Adam's beta1
    momentum: float = Field(default=0.9, ge=0)  # sgd only


class ScheduleConfig(_Section):
    """Multi-step learning-rate schedule over iterations or a wall-time budget.

    Decays are given either as ``milestones`` (iterations, the paper's form) or as ``decay_at``
    (fractions of the run). With ``minutes`` set (or ``gaitid train --max-minutes``) the run
    is sized by wall time instead of iterations: the decays happen at the same fractions of
    the training time and ``iterations`` is only an upper bound (``training.schedule``).
    """

    iterations: int = Field(default=80_000, ge=1)
    milestones: list[int] = Field(default_factory=lambda: [70_000])
    decay_at: list[float] | None = None  # fractions of the run in (0, 1); replaces milestones
    gamma: float = Field(default=0.1, gt=0)
    warmup_iterations: int = Field(default=0, ge=0)  # linear warm-up from 0 (0 = none)
    minutes: float | None = Field(default=None, gt=0)  # wall-time budget of the whole run

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(value)) or any(v < 1 for v in value):
            raise ValueError(f"milestones must be positive and strictly increasing, got {value}")
        return value

    @field_validator("decay_at")
    @classmethod
    def _fractions(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        if any(b <= a for a, b in itertools.pairwise(value)) or any(not 0 < v < 1 for v in value):
            raise ValueError(
                f"decay_at must be strictly increasing fractions in (0, 1), got {value}"
            )
        return value

    @model_validator(mode="after")
    def _one_decay_form(self) -> ScheduleConfig:
        if self.decay_at is not None and "milestones" in self.model_fields_set:
            raise ValueError("give schedule.milestones or schedule.decay_at, not both")
        return self

    def decay_fractions(self) -> list[float]:
        """Where the learning rate decays, as fractions of the run."""
        if self.decay_at is not None:
            return list(self.decay_at)
        return [m / self.iterations for m in self.milestones]


class LossConfig(_Section):
    """Weights of every loss term (0 disables a term); all terms are logged."""

    tri1: float = Field(default=1.0, ge=0)  # batch-all triplet on tri1_features (Eq. 10)
    tri2: float = Field(default=1.0, ge=0)  # batch-all triplet on tri2_features (Eq. 11)
    ce: float = Field(default=1.0, ge=0)  # cross-entropy through the BNNeck per part (Eq. 13)
    margin: float = Field(default=0.2, gt=0)  # triplet margin m (Table II)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)


class TrainerConfig(_Section):
    # bf16 autocast: "auto" = on CUDA, and on CPUs with bf16 matrix units (AMX or AVX-512 BF16),
    # where a lite step is 1.4-1.7x faster; fp32 on other CPUs, where bf16 is slower.
    # true forces it on, false off.
    amp: bool | Literal["auto"] = "auto"
    grad_clip: float | None = Field(default=None, gt=0)  # max global grad norm (None = off)
    checkpoint_every: int = Field(default=1000, ge=1)
    log_every: int = Field(default=50, ge=1)
    eval_every: int = Field(
        default=0, ge=0
    )  # 0 = evaluate only at the end (when val subjects given)
    eval_batch_size: int = Field(default=8, ge=1)
    # frames per walk in the periodic (eval_every) validations: the middle window, so they
    # cost little; None = every frame. The final validation always uses every frame.
    eval_frames: int | None = Field(default=None, ge=1)
    eval_protocol: Literal["casia-b", "ou-mvlp", "retrieval"] = "casia-b"
    # the test-time shift set of every validation (``gaitid.model.test_time``): the one
    # `gaitid export` writes into the graph by default, so that the run's calibration
    # (eval/calibration.json) holds for its export
    eval_shifts: Literal["none", "cross"] = "cross"
    keep_checkpoints: int = Field(default=2, ge=1)  # iteration checkpoints kept besides last.pt
    progress: bool = True  # tqdm bar on rank 0


class EmbeddingFitConfig(_Section):
    """How the service embedding is fitted after the last iteration (`training.embedding_fit`)."""

    # training walks (a seeded sample, every frame) the PCA + whitening is fitted on
    fit_walks: int = Field(default=4000, ge=3)
    # ridge r of the within-class whitening, in units of the mean within-class variance
    regularization: float = Field(default=1.0, gt=0)
    # frames per walk fed to the fit (the middle window; None = every frame, as evaluation)
    fit_frames: int | None = Field(default=None, ge=1)


class InitConfig(_Section):
    """Start from earlier weights (a second training stage) instead of a random init."""

    checkpoint: Path  # a checkpoint written by `gaitid train`
    freeze: list[str] = Field(default_factory=list)  # parameter-name prefixes kept fixed
    new_modules: list[str] = Field(default_factory=list)  # prefixes absent there (random init)
    # continuing on more identities than the checkpoint's (e.g. its 62 and 12 new ones): the
    # classifier keeps the checkpoint's weights for every identity both runs train on (matched
    # by subject id), the others start random, instead of the whole classifier starting random
    keep_identities: bool = False
    # an ensemble checkpoint (`gaitid ensemble`, e.g. the shipped weights): the member whose
    # network this run continues (0-based; `gaitid train --init-member`); None for one network
    member: int | None = Field(None, ge=0)
    # the checkpoint is the same network with narrower inner backbone widths (model.overrides
    # channels): grow them to this run's, keeping what it computes (model/widen.py)
    widen: bool = False


class TrainConfig(_Section):
    """The whole of one training run."""

    name: str = "lmgcs"
    seed: int = 0
    output_dir: Path | None = None  # run folder (relative to this file); `--out` overrides
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig
    # sections are frozen, so one shared default instance per section is safe
    model: ModelSection = ModelSection()
    sampler: SamplerConfig = SamplerConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    trainer: TrainerConfig = TrainerConfig()
    embedding: EmbeddingFitConfig = EmbeddingFitConfig()
    init: InitConfig | None = None

    @model_validator(mode="after")
    def _milestones_inside(self) -> TrainConfig:
        if self.schedule.decay_at is not None:
            return self
        late = [m for m in self.schedule.milestones if m >= self.schedule.iterations]
        if late:
            raise ValueError(
                f"schedule.milestones {late} are not below schedule.iterations "
                f"({self.schedule.iterations}); they would never apply"
            )
        return self


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    """Return ``config`` with every relative path made absolute against ``base``."""
    data = config.data.model_copy(
        update={
            "root": _resolve(config.data.root, base),
            "partition": _resolve(config.data.partition, base),
            "clip_walks": _resolve(config.data.clip_walks, base),
        }
    )
    init = config.init
    if init is not None:
        init = init.model_copy(update={"checkpoint": _resolve(init.checkpoint, base)})
    return config.model_copy(
        update={"data": data, "init": init, "output_dir": _resolve(config.output_dir, base)}
    )


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read, validate and path-resolve a YAML training config.

    ``overrides`` is a nested dict merged over the file (used by tests and the CLI); it goes
    through the same validation, so an unknown override key is an error too.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(raw).__name__}")
    if overrides:
        raw = _deep_merge(raw, overrides)
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {path}:\n{exc}") from exc
    return resolve_paths(config, path.resolve().parent)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
