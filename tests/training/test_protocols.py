"""Protocols on hand-built features: the CASIA-B table, OU-MVLP's two figures, retrieval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitid.training.evaluation.protocols import (
    CASIA_B,
    CASIA_B_VIEWS,
    OU_MVLP_VIEWS,
    FeatureSet,
    ProtocolError,
    evaluate_cross_view,
    run_protocol,
)
from gaitid.training.evaluation.report import to_json, to_markdown, write_report


def _casia_features(wrong_probe: tuple[str, str, str] | None = None) -> FeatureSet:
    """3 subjects, every view, gallery nm-01..04, probes nm-05 / bg-01 / cl-01.

    Each subject sits on its own axis, so every probe is right under both distances, except
    ``wrong_probe`` = (subject, condition, view) which is placed on the next subject's axis.
    """
    subjects, conditions, views, vectors = [], [], [], []
    for s in range(3):
        for cond in ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "bg-01", "cl-01"):
            for view in CASIA_B_VIEWS:
                axis = s
                if wrong_probe == (f"{s:03d}", cond, view):
                    axis = (s + 1) % 3
                v = np.zeros(256, np.float32)
                v[axis] = 1.0
                subjects.append(f"{s:03d}")
                conditions.append(cond)
                views.append(view)
                vectors.append(v)
    emb = np.stack(vectors)
    parts = np.repeat(emb[:, None, :8], 4, axis=1)  # [N, P=4, D=8], same geometry
    return FeatureSet(np.array(subjects), np.array(conditions), np.array(views), emb, parts)


def test_perfect_features_score_100_everywhere_with_both_distances() -> None:
    results = run_protocol(_casia_features(), "casia-b")
    assert [r.distance for r in results] == ["part", "embedding"]
    for r in results:
        assert r.mean == {"NM": 100.0, "BG": 100.0, "CL": 100.0}
        assert r.num_probes == {"NM": 33, "BG": 33, "CL": 33} and r.num_gallery == 132


def test_one_wrong_probe_lowers_exactly_its_row() -> None:
    # subject 001's cl-01 probe at 036 matches subject 002 in every gallery view:
    # row 036 of CL: 2 of 3 probes right in each of the 10 other gallery views -> 66.67
    r = evaluate_cross_view(_casia_features(("001", "cl-01", "036")), CASIA_B, "embedding")
    row = CASIA_B_VIEWS.index("036")
    assert r.per_view["CL"][row] == pytest.approx(200 / 3)
    others = np.delete(r.per_view["CL"], row)
    assert np.all(others == 100.0)
    assert r.mean["CL"] == pytest.approx((10 * 100 + 200 / 3) / 11)
    assert r.mean["NM"] == 100.0 and r.mean["BG"] == 100.0


def test_ou_mvlp_reports_with_and_without_unmatched_probes() -> None:
    # 2 subjects, gallery seq 01 and probe seq 00 at every view; subject 001 lacks gallery at 000
    subjects, conditions, views, vectors = [], [], [], []
    for s in range(2):
        for seq in ("00", "01"):
            for view in OU_MVLP_VIEWS:
                if s == 1 and seq == "01" and view == "000":
                    continue
                v = np.zeros(256, np.float32)
                v[s] = 1.0
                subjects.append(f"{s:03d}")
                conditions.append(seq)
                views.append(view)
                vectors.append(v)
    features = FeatureSet(
        np.array(subjects), np.array(conditions), np.array(views), np.stack(vectors)
    )
    counted, matched = run_protocol(features, "ou-mvlp")
    assert not counted.exclude_unmatched and matched.exclude_unmatched
    g = OU_MVLP_VIEWS.index("000")
    # gallery view 000 holds only subject 000: the probe of 001 misses (50%) or is dropped (100%)
    assert counted.tables["NM"][1, g] == 50.0 and matched.tables["NM"][1, g] == 100.0
    assert matched.mean["NM"] == 100.0 and counted.mean["NM"] < 100.0


def test_retrieval_percentages() -> None:
    results = run_protocol(_casia_features(("001", "nm-05", "090")), "retrieval")
    emb = next(r for r in results if r.distance == "embedding")
    # 99 probes; one misplaced probe has all of its 44 true matches after the 44 of 002
    assert emb.metrics["num_probes"] == 99 and emb.metrics["R@1"] == pytest.approx(9800 / 99)
    assert emb.metrics["R@10"] == pytest.approx(9800 / 99)
    assert 0 < emb.metrics["mINP"] < 100


def test_onnx_features_offer_only_the_embedding_distance() -> None:
    f = _casia_features()
    f = FeatureSet(f.subjects, f.conditions, f.views, f.embeddings)
    assert [r.distance for r in run_protocol(f, "casia-b")] == ["embedding"]
    with pytest.raises(ProtocolError, match="part features"):
        f.distance(np.array([0]), np.array([1]), "part")


def test_protocol_errors_name_what_is_missing() -> None:
    f = _casia_features()
    only_probes = np.isin(f.conditions, ["nm-05"])
    g = FeatureSet(
        f.subjects[only_probes],
        f.conditions[only_probes],
        f.views[only_probes],
        f.embeddings[only_probes],
    )
    with pytest.raises(ProtocolError, match="no gallery walks"):
        run_protocol(g, "casia-b")
    with pytest.raises(ProtocolError, match="both probe and gallery"):
        run_protocol(f, "retrieval", probe_conditions=("nm-01",), gallery_conditions=("nm-01",))
    with pytest.raises(ProtocolError, match="unknown protocol"):
        run_protocol(f, "gait3d")  # type: ignore[arg-type]


def test_reports_markdown_json_and_heatmaps(tmp_path) -> None:
    results = run_protocol(_casia_features(("001", "cl-01", "036")), "casia-b")
    md = to_markdown(results)
    assert "| CL | 100.0 | 100.0 | 66.7 |" in md and "part-wise Euclidean" in md
    data = to_json(results, {"protocol": "casia-b"})
    json.dumps(data)  # serialisable, NaN written as null
    assert data["results"][0]["tables"]["NM"][0][0] == 100.0
    written = write_report(results, tmp_path, {"protocol": "casia-b", "data": "x", "model": "m"})
    assert written["heatmap-part"].stat().st_size > 5000
    assert json.loads(written["json"].read_text())["results"][1]["distance"] == "embedding"
