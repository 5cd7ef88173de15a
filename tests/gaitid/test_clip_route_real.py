"""Regression (issue 24): real walks of held-out subjects through the composited camera clips
of ``gaitid clip-walks``, each one a failure found by building them. Skipped when
``../shared/data/casia-b-train`` is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaitid.training.clip_walks import ClipWalk, read_through_clip, walk_camera
from gaitid.training.data.opengait import WalkKey

pytestmark = pytest.mark.real_data


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


@pytest.mark.parametrize("key", ["069/cl-01/000", "071/bg-01/180"])
def test_a_small_person_walking_in_depth_is_refused_not_cut_into_pieces(
    casia_b_train_dir: Path, key: str
) -> None:
    """Too few pixels changed between neighbouring frames for the clip's motion to count, so
    it was not judged as staying in place, and pieces of the outline (mask IoU 0.02-0.08)
    reached the model as a walk."""
    record = _read(casia_b_train_dir, key)
    assert record.error is not None and record.error.startswith("BackgroundNeededError")
