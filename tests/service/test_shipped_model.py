"""The shipped model: present, within the contract, calibrated, and described by its card."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from gaitid.contract import int8_weight_bits
from gaitid.segment import SegmentationConfig
from gaitid.service.config import SHIPPED_MODEL, SHIPPED_MODEL_INT8
from gaitid.service.walks.inference import Embedder

CARD = SHIPPED_MODEL.parent / "README.md"
MAX_BYTES = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(SHIPPED_MODEL, device="cpu")


def test_the_shipped_model_is_committed_and_small_enough() -> None:
    assert SHIPPED_MODEL.is_file(), "models/gaitid-lmgcs.onnx must ship with the source"
    assert SHIPPED_MODEL.stat().st_size < MAX_BYTES


def test_its_metadata_carries_a_calibrated_threshold_and_no_local_path(
    embedder: Embedder,
) -> None:
    info = embedder.info
    assert info.variant == "lite" and info.default_threshold is not None
    assert 0.0 < info.default_threshold < 1.0
    assert "62 subjects" in info.training_data and "063..074 held out" in info.training_data
    assert not re.search(r"(^|[\s(])/(work|home|root|tmp|Users)\b", info.training_data)
    # its thresholds were calibrated on the embedding function it computes: the shift set in
    # its graph is the one both calibrations record
    assert info.test_time_shifts == "cross"
    meta = {
        p.key: p.value
        for p in onnx.load(str(SHIPPED_MODEL), load_external_data=False).metadata_props
    }
    for key in ("threshold_calibration", "clip_threshold_calibration"):
        assert json.loads(meta[key])["test_time_shifts"] == info.test_time_shifts
    # the clip threshold was calibrated on walks read by the service's own segmentation at the
    # working height it segments at: the route, and so its threshold, depends on it
    probes = json.loads(meta["clip_threshold_calibration"])["probes"]
    assert f"segmented at {SegmentationConfig().working_height} rows" in probes


def test_the_card_states_the_threshold_the_model_carries(embedder: Embedder) -> None:
    card = CARD.read_text()
    assert embedder.info.default_threshold is not None
    assert f"**{embedder.info.default_threshold:.4f}**" in card
    assert "{{" not in card  # no unfilled placeholder


def test_it_embeds_walks_of_any_length_to_unit_vectors(embedder: Embedder) -> None:
    rng = np.random.default_rng(0)
    walks = [(rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255 for t in (8, 40, 120)]
    vectors = embedder.embed_batch(walks)
    assert vectors.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_int8_model_is_the_same_function_quantised(embedder: Embedder) -> None:
    """The int8 file is the fp32 file quantised: the same version and shift set (one quantised
    pass, wrapped in the same shifts: models/README.md, "Int8 model"), its own thresholds (the
    fp32 ones moved by the shift int8 was measured to cause), and embeddings that agree with
    the fp32 file's."""
    assert SHIPPED_MODEL_INT8.stat().st_size < MAX_BYTES
    int8 = Embedder(SHIPPED_MODEL_INT8, device="cpu")
    assert int8.info.version == embedder.info.version
    assert int8.info.test_time_shifts == embedder.info.test_time_shifts
    meta = {
        p.key: p.value
        for p in onnx.load(str(SHIPPED_MODEL_INT8), load_external_data=False).metadata_props
    }
    assert meta["precision"] == "int8"
    assert int8_weight_bits(meta) == 7  # right on every x86 CPU, with VNNI or without
    record = json.loads(meta["threshold_calibration"])
    assert int8.info.default_threshold is not None
    assert record["transferred_from_float32"] == pytest.approx(embedder.info.default_threshold)
    shift = record["derived_threshold_at_fmr"] - record["float32_threshold_at_fmr"]
    assert abs(shift) < 0.02  # quantisation moves scores a little, not a lot
    assert int8.info.default_threshold == pytest.approx(
        record["transferred_from_float32"] + shift, abs=1e-5
    )
    assert int8.info.clip_threshold is not None and embedder.info.clip_threshold is not None
    assert int8.info.clip_threshold - int8.info.default_threshold == pytest.approx(
        embedder.info.clip_threshold - embedder.info.default_threshold, abs=1e-5
    )
    rng = np.random.default_rng(1)
    walk = np.zeros((60, 64, 44), np.uint8)
    for t in range(60):  # a blob that moves and changes width: closer to a walk than noise
        width = 8 + int(4 * np.sin(t / 4))
        walk[t, 10:60, 22 - width : 22 + width] = 255
    walk[:, :, :] = np.where(rng.random(walk.shape) < 0.02, 255 - walk, walk)
    a, b = embedder.embed_batch([walk])[0], int8.embed_batch([walk])[0]
    assert float(a @ b) > 0.95  # fp32 against int8


@pytest.mark.parametrize("path", [SHIPPED_MODEL, SHIPPED_MODEL_INT8], ids=["fp32", "int8"])
def test_no_local_path_ships_in_a_model_file(path: Path) -> None:
    """Not in the metadata, nor in the graph: the exporter's per-node stack traces named this
    machine's source files until the export dropped them."""
    raw = path.read_bytes()
    assert not re.search(rb"/(work|home|root|tmp|Users)/", raw)
