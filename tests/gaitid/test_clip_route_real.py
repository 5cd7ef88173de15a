"""Regression (issue 24): real walks of held-out subjects through the composited camera clips
of ``gaitid clip-walks``, each one a failure found by building them. Skipped when
``../shared/data/casia-b-train`` is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaitid.training.clip_walks import ClipWalk, read_through_clip, walk_camera
from gaitid.training.data.opengait import WalkKey
from tests.conftest import REPO_ROOT
from tests.utils.bench import load_bench

pytestmark = pytest.mark.real_data

SHIPPED = REPO_ROOT / "models" / "gaitid-lmgcs.onnx"
#: Issue 24's bound on the rank-1 lost through clips (mean over NM, BG, CL).
MAX_LOSS = 5.0


def _read(data: Path, key: str) -> ClipWalk:
    subject, condition, view = key.split("/")
    frames64 = np.load(data / f"{subject}.npz")[f"{condition}/{view}"]
    camera, seed = walk_camera(WalkKey(subject=subject, condition=condition, view=view), 0)
    _frames, record = read_through_clip(frames64, camera, seed)
    return record


@pytest.mark.parametrize("key", ["065/nm-05/054", "065/nm-05/144", "072/bg-01/054"])
def test_a_person_coming_apart_in_pieces_keeps_every_visible_frame(
    casia_b_train_dir: Path, key: str
) -> None:
    """These clips' people came apart (at the waist, a bag while entering) into two tracks
    that then "overlapped": 106 visible frames dropped, one walk refused."""
    record = _read(casia_b_train_dir, key)
    assert record.error is None, record.error
    assert not record.dropped_visible, record.dropped_visible
    assert record.iou > 0.9


@pytest.mark.parametrize("key", ["065/bg-01/036", "065/nm-05/162"])
def test_a_silhouette_broken_at_the_neck_keeps_its_head(casia_b_train_dir: Path, key: str) -> None:
    """One frame of each of these walks is cut across the neck in CASIA-B itself; the head was
    joined only within 15 % of the rest's height, so that frame was a headless piece and was
    dropped as ``too_small`` while the person was in full view."""
    record = _read(casia_b_train_dir, key)
    assert record.error is None, record.error
    assert not record.dropped_visible, record.dropped_visible


@pytest.mark.parametrize("key", ["069/cl-01/000", "071/bg-01/180", "065/cl-01/180"])
def test_a_small_person_walking_in_depth_is_refused_not_cut_into_pieces(
    casia_b_train_dir: Path, key: str
) -> None:
    """Too few pixels changed between neighbouring frames for the clip's motion to count, so
    it was not judged as staying in place, and pieces of the outline (mask IoU 0.02-0.08)
    reached the model as a walk; or, none of the pieces being whole, it was refused as showing
    nobody (065 cl-01 180) when what it needs is an empty-scene frame."""
    record = _read(casia_b_train_dir, key)
    assert record.error is not None and record.error.startswith("BackgroundNeededError")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is absent")
def test_rank1_through_clips_stays_within_the_bound_of_clean_silhouettes(
    casia_b_train_dir: Path,
) -> None:
    """The code of ``bench/clip_identity.py`` on a small fixed set: nm-05 / bg-01 / cl-01 of
    063-068 at 054 (065 came apart there), each walk through its own composited clip and
    from its clean silhouettes, against clean nm-01/090 templates. The shipped model never
    trained on these subjects (it trained on 001-062), so this holds issue 24's bound for
    people the model never saw, on a small set: a segmentation regression shows here as lost
    rank-1 and dropped frames."""
    bench = load_bench("clip_identity")
    subjects = [f"{n:03d}" for n in range(63, 69)]
    probes, gallery = bench.read_probes(casia_b_train_dir, subjects, ["054"], log=False)
    result = bench.embed_probes(SHIPPED, probes, gallery)
    assert len(result.probes) == 18
    assert not [p.error for p in result.probes if p.error], "a clip was refused"
    assert not [p.dropped_visible for p in result.probes if p.dropped_visible]
    loss = result.mean("clean", "rank1") - result.mean("clip", "rank1")
    assert loss <= MAX_LOSS, (result.table("clean"), result.table("clip"))
