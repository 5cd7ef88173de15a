"""Everything one running app holds, built at start-up by :func:`start_state`.

Nothing here exists at import time: the engine, the ONNX session, the batcher and the indexes
are created when the app starts (its lifespan), in an order that makes "ready" mean something:
the schema is checked first (refusing an unmigrated database), then the model is loaded,
then the indexes are built from SQL, then the change follower starts (other processes'
changes, ``gaitid.service.search.replication``), and only then does :attr:`ServiceState.ready` turn
true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import anyio

from gaitid.segment import OnnxPersonSegmenter, PersonSegmenter
from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.outage import DatabaseCircuit
from gaitid.service.db.schema import require_migrated
from gaitid.service.metrics import Metrics
from gaitid.service.search.gallery_index import GalleryIndexes
from gaitid.service.search.index import VectorIndex
from gaitid.service.search.replication import ChangeFollower
from gaitid.service.walks.batching import MicroBatcher
from gaitid.service.walks.inference import Embedder, ModelInfo

logger = logging.getLogger(__name__)

#: Builds the embedder from the settings; tests may pass their own.
EmbedderFactory = Callable[[Settings], Embedder]


def default_embedder(settings: Settings) -> Embedder:
    """The ONNX Runtime embedder for ``settings.resolved_model_path``."""
    return Embedder(
        settings.resolved_model_path,
        device=settings.device,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
    )


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    embedder: Embedder
    batcher: MicroBatcher
    indexes: GalleryIndexes
    metrics: Metrics
    follower: ChangeFollower
    decode_slots: anyio.CapacityLimiter
    """Uploads read into memory and decoded at once (``max_concurrent_decodes``)."""
    segmenter: PersonSegmenter | None = None
    """The learned person segmenter for footage (``segmenter_path``), if configured."""
    ready: bool = False

    @property
    def model(self) -> ModelInfo:
        return self.embedder.info


def index_factory(settings: Settings, dim: int) -> Callable[[], VectorIndex]:
    """A zero-argument constructor of empty indexes configured by ``settings``."""
    return partial(
        VectorIndex,
        dim,
        settings.index_kind,
        use_gpu=settings.use_gpu_index,
        nlist=settings.index_nlist,
        nprobe=settings.index_nprobe,
        hnsw_m=settings.index_hnsw_m,
        ef_search=settings.index_ef_search,
    )


async def start_state(
    settings: Settings, metrics: Metrics, embedder_factory: EmbedderFactory
) -> ServiceState:
    """Check the schema, load the model, build the indexes; raise if any step fails."""
    db = Database(
        settings.resolved_database_url,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
        busy_timeout_s=settings.database_busy_timeout_s,
        circuit=DatabaseCircuit(
            failures_to_open=settings.database_circuit_failures,
            open_s=settings.database_circuit_open_s,
            probe_s=settings.database_connect_timeout_s + 1.0,
        ),
    )
    try:
        await anyio.to_thread.run_sync(require_migrated, db.engine, db.url_for_display)
        embedder = await anyio.to_thread.run_sync(embedder_factory, settings)
        segmenter = (
            None
            if settings.segmenter_path is None
            else await anyio.to_thread.run_sync(OnnxPersonSegmenter, settings.segmenter_path)
        )
        info = embedder.info
        indexes = GalleryIndexes(
            db, info.sha256, info.embedding_dim, index_factory(settings, info.embedding_dim)
        )
        sizes = await anyio.to_thread.run_sync(indexes.rebuild)
        batcher = MicroBatcher(
            embedder,
            max_batch=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            max_frames_per_batch=settings.batch_max_frames,
            enabled=settings.batching_enabled,
        )
        await batcher.start()
    except BaseException:
        db.dispose()
        raise
    follower = ChangeFollower(
        indexes,
        db,
        poll_s=settings.replication_poll_s,
        listen=settings.replication_listen,
        retention_s=settings.change_log_retention_s,
    )
    follower.start()
    metrics.bind_index_size(indexes.__len__)
    metrics.bind_database(db.circuit.stats)
    slots = anyio.CapacityLimiter(settings.max_concurrent_decodes)
    state = ServiceState(
        settings, db, embedder, batcher, indexes, metrics, follower, slots, segmenter
    )
    state.ready = True
    logger.info(
        "ready: model %s (%s) on %s, %d templates in %d galleries, database %s",
        info.version,
        info.sha256[:12],
        embedder.providers,
        sum(sizes.values()),
        len(sizes),
        db.url_for_display,
    )
    return state


async def stop_state(state: ServiceState) -> None:
    """Stop taking work and following changes, fail queued embeddings, close the database."""
    state.ready = False
    await anyio.to_thread.run_sync(state.follower.stop)
    await state.batcher.stop()
    state.db.dispose()
