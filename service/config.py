"""The service's settings: one pydantic-settings class read from ``GAITID_*`` variables.

Everything the service can be told lives here, so a deployment is described by its
environment alone (see ``service/README.md`` for the table). Unknown ``GAITID_*`` keys passed
to the constructor are rejected, and values are validated at start-up rather than at first
use. Nothing is read at import time: :func:`load_settings` builds a fresh object each call, so
tests construct their own ``Settings`` and never touch the process environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Score threshold used when neither the request, the gallery nor the model names one.
#: Cosine similarity of unit vectors lies in [-1, 1]; 0.5 is deliberately conservative for an
#: uncalibrated model (documented in service/README.md, "Thresholds").
FALLBACK_THRESHOLD = 0.5

#: The trained model committed with the source (``models/``; see models/README.md). Found
#: beside the package in a source checkout or editable install; a wheel does not carry it (the
#: images copy ``models/`` to ``/models`` and point ``GAITID_MODEL_PATH`` at it).
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "gaitid-lmgcs.onnx"
#: Its static int8 model (``gaitid quantize``; ``GAITID_MODEL_PRECISION=int8``).
SHIPPED_MODEL_INT8 = SHIPPED_MODEL.with_name("gaitid-lmgcs.int8.onnx")


def default_data_dir() -> Path:
    """Per-user data directory: ``$XDG_DATA_HOME/gaitid`` or ``~/.local/share/gaitid``.

    Resolved from the environment, never from the working directory, so the service finds
    the same database whichever directory it is started from.
    """
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return (base / "gaitid").expanduser().resolve()


class Settings(BaseSettings):
    """Configuration of one service process (env prefix ``GAITID_``)."""

    model_config = SettingsConfigDict(env_prefix="GAITID_", extra="forbid", frozen=True)

    # --- storage -----------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the embedded SQLite database and the default model file live."""
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/gaitid.db``."""
    database_url_file: Path | None = None
    """A file holding the URL instead (Docker/Kubernetes secrets); exclusive with database_url."""
    database_pool_size: int = Field(default=10, ge=1, le=200)
    """Connections kept open per process (PostgreSQL; SQLite ignores it)."""
    database_connect_timeout_s: int = Field(default=3, ge=2, le=60)
    """Longest PostgreSQL connection attempt (whole seconds, libpq's minimum is 2): while the
    database is away, requests are refused after this at most, never piled up behind it."""
    database_busy_timeout_s: float = Field(default=30.0, gt=0.0, le=600.0)
    """How long a SQLite writer waits for another writer's lock before its request is
    refused (503 ``database_unavailable``)."""
    database_circuit_failures: int = Field(default=3, ge=1, le=1000)
    """Consecutive "unreachable" failures after which requests fail fast (503 at once,
    without a connection attempt) for ``database_circuit_open_s``."""
    database_circuit_open_s: float = Field(default=2.0, gt=0.0, le=300.0)
    """Seconds requests fail fast once the circuit is open; then one request at a time
    probes the database, and the first success closes the circuit (the ``Retry-After``)."""
    store_silhouettes: bool = False
    """Keep the preprocessed (T,64,44) frames of each template (for later re-embedding)."""

    # --- model -------------------------------------------------------------------------
    model_path: Path | None = None
    """The ONNX file (gaitid.contract); default ``<data_dir>/model.onnx`` if present, else the
    shipped model (``SHIPPED_MODEL``)."""
    model_precision: Literal["fp32", "int8"] = "fp32"
    """Which shipped model serves when ``model_path`` is unset: the float32 export or its
    static int8 model (1.6x faster on CPUs with VNNI, same rank-1; models/README.md). A
    ``model_path`` names its own file, whose metadata says its precision."""
    segmenter_path: Path | None = None
    """Optional ONNX person-segmentation model for camera footage (contract in
    ``gaitid.segment``); unset, footage is segmented by background subtraction."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(default=0, ge=0)
    """ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose."""
    inter_op_threads: int = Field(default=0, ge=0)

    # --- micro-batching ----------------------------------------------------------------
    batching_enabled: bool = True
    batch_max_size: int = Field(default=8, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    batch_max_frames: int = Field(default=256, ge=1)
    """Cap on padded frames (batch size x longest walk) in one ONNX Runtime run: with one
    inference thread, the inference part of the memory ceiling (service/README.md). Memory
    grows faster than the frames: with the shipped five-pass model a run of 256 frames adds
    about 250 MiB to the process, 512 frames 510-910 MiB (``bench/inference_memory.py``)."""
    max_embed_frames: int = Field(default=256, ge=8)
    """Frames the network sees at once; a longer walk is embedded in equal chunks whose
    embeddings are averaged (``gaitid.contract.split_walk``)."""

    # --- index -------------------------------------------------------------------------
    index_kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    index_use_gpu: Literal["auto", "true", "false"] = "auto"
    index_nlist: int = Field(default=1024, ge=1)
    index_nprobe: int = Field(default=16, ge=1)
    index_hnsw_m: int = Field(default=32, ge=2)
    index_ef_search: int = Field(default=128, ge=1)

    # --- limits ------------------------------------------------------------------------
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    """Largest accepted upload file; the request body may exceed it by ``form_overhead_bytes``."""
    form_overhead_bytes: int = Field(default=64 * 1024, ge=1024)
    """Room for the multipart framing and the text fields beside the file."""
    max_frames: int = Field(default=1000, ge=1)
    max_pixels_per_frame: int = Field(default=1 << 21, ge=64 * 44)
    """Height x width of one raw frame (2 Mpx admits 1920x1080)."""
    max_uncompressed_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    """Bytes an archive or compressed array may inflate to (zip bombs)."""
    max_pixels_per_request: int = Field(default=1 << 28, ge=64 * 44)
    """Pixels decoded for one walk, all frames together: the CPU budget of one upload."""
    max_concurrent_decodes: int = Field(default=2, ge=1, le=64)
    """Uploads read into memory and decoded at once; the others wait (memory ceiling)."""
    min_frames: int = Field(default=8, ge=1)
    """Usable frames an upload needs after empty frames are dropped."""
    request_timeout_s: float = Field(default=60.0, gt=0.0)
    """Whole-request budget (upload included); past it the client gets 504."""
    max_top_k: int = Field(default=100, ge=1, le=1000)
    implicit_galleries: bool = True
    """Enrolling into a gallery that does not exist creates it (the laptop path); off, a
    gallery must be created with ``POST /galleries`` first (404 otherwise)."""

    # --- several processes on one database -----------------------------------------------
    replication_poll_s: float = Field(default=0.5, gt=0.0, le=60.0)
    """Seconds between reads of the change log (changes of other processes); the fallback
    when a NOTIFY is missed, and the only signal on SQLite or with listening turned off."""
    replication_listen: bool = True
    """PostgreSQL: wake up on NOTIFY of other processes' changes (turn off behind a pooler
    that does not keep LISTEN sessions, e.g. PgBouncer in transaction mode)."""
    change_log_retention_s: float = Field(default=86400.0, ge=60.0)
    """Change-log rows older than this are pruned; a process away for longer rebuilds its
    index from SQL instead of replaying."""

    # --- decisions -----------------------------------------------------------------------
    fallback_threshold: float = Field(default=FALLBACK_THRESHOLD, ge=-1.0, le=1.0)
    """Threshold when neither request, gallery nor model metadata gives one."""

    # --- process -----------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    """When set, ``/metrics`` answers only ``Authorization: Bearer <token>`` (Prometheus's
    ``authorization`` setting); unset, it is open like ``/healthz``."""

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        """Relative paths would depend on the working directory; resolve them once here."""
        object.__setattr__(self, "data_dir", self.data_dir.expanduser().resolve())
        if self.model_path is not None:
            object.__setattr__(self, "model_path", self.model_path.expanduser().resolve())
        if self.segmenter_path is not None:
            object.__setattr__(self, "segmenter_path", self.segmenter_path.expanduser().resolve())
        return self

    @model_validator(mode="after")
    def _precision_picks_a_shipped_model(self) -> Settings:
        """``int8`` beside an explicit model file would be silently ignored: refuse it."""
        if self.model_path is not None and self.model_precision != "fp32":
            raise ValueError(
                "GAITID_MODEL_PRECISION picks one of the shipped models; with GAITID_MODEL_PATH "
                "set, point it at the file you want (e.g. gaitid-lmgcs.int8.onnx) instead"
            )
        return self

    @model_validator(mode="after")
    def _chunks_fit_a_batch(self) -> Settings:
        """A chunk longer than a batch would run alone past the batch's memory bound."""
        if self.max_embed_frames > self.batch_max_frames:
            raise ValueError(
                f"GAITID_MAX_EMBED_FRAMES ({self.max_embed_frames}) must be <= "
                f"GAITID_BATCH_MAX_FRAMES ({self.batch_max_frames})"
            )
        return self

    @model_validator(mode="after")
    def _ivf_probes_fit_lists(self) -> Settings:
        """An IVF search cannot probe more lists than it has; fail at start-up, not at build."""
        if self.index_nprobe > self.index_nlist:
            raise ValueError(
                f"GAITID_INDEX_NPROBE ({self.index_nprobe}) must be <= GAITID_INDEX_NLIST "
                f"({self.index_nlist})"
            )
        return self

    @model_validator(mode="after")
    def _database_url_from_file(self) -> Settings:
        """Secrets arrive as files in container orchestrators; read the URL once, at start-up."""
        if self.database_url_file is None:
            return self
        if self.database_url:
            raise ValueError("set GAITID_DATABASE_URL or GAITID_DATABASE_URL_FILE, not both")
        path = self.database_url_file.expanduser().resolve()
        try:
            url = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"GAITID_DATABASE_URL_FILE {path} cannot be read: {exc}") from exc
        if not url:
            raise ValueError(f"GAITID_DATABASE_URL_FILE {path} is empty")
        object.__setattr__(self, "database_url_file", path)
        object.__setattr__(self, "database_url", url)
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'gaitid.db'}"

    @property
    def resolved_model_path(self) -> Path:
        """The configured model file; else ``<data_dir>/model.onnx`` when one was placed there;
        else the shipped model of ``model_precision`` when this is a source checkout; else
        ``<data_dir>/model.onnx`` (whose absence the model loader then reports)."""
        if self.model_path is not None:
            return self.model_path
        placed = self.data_dir / "model.onnx"
        shipped = SHIPPED_MODEL_INT8 if self.model_precision == "int8" else SHIPPED_MODEL
        if not placed.is_file() and shipped.is_file():
            return shipped
        return placed

    @property
    def max_request_bytes(self) -> int:
        """Body cap enforced before the multipart parser sees the request."""
        return self.max_upload_bytes + self.form_overhead_bytes

    @property
    def use_gpu_index(self) -> bool | Literal["auto"]:
        """``index_use_gpu`` in the form :class:`service.search.index.VectorIndex` takes."""
        return "auto" if self.index_use_gpu == "auto" else self.index_use_gpu == "true"


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit keyword overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
