"""Several people in one clip (issue 26): each tracked apart, through crossings, stops and
turns, and people who are never apart refused rather than merged."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitid.decode import read_frames
from gaitid.segment import (
    FrontEnd,
    IndistinctPeopleError,
    PersonChoiceError,
    Segmentation,
    SegmentationConfig,
    read_walk,
    read_walks,
    segment_people,
    to_working_rgb,
)
from tests.utils import clips

#: Mask IoU of each track with its own person, outside the frames where people touch.
MIN_IOU = 0.85
#: No kept mask holds more than this share of pixels of another person.
MAX_OTHER_SHARE = 0.1

RED, BLUE, GREEN = (200, 70, 60), (60, 80, 200), (90, 190, 80)


def _small(clip: clips.PeopleClip) -> list[tuple[int, np.ndarray]]:
    """The clip through mp4 and back, at the working size."""
    config = SegmentationConfig()
    frames = read_frames(clips.encode_mp4(clip.frames))
    return [(i, to_working_rgb(frame, None, config)) for i, frame in enumerate(frames)]


def _iou(clip: clips.PeopleClip, found: Segmentation, walker: int) -> float:
    """Mean mask IoU of ``found`` with ``walker`` over its kept frames where nobody touches."""
    near = clip.overlapping(walker)
    scores = [
        clips.mask_iou(mask > 0, _truth(clip, walker, key, mask.shape))
        for key, mask in found.masks
        if not near[key]
    ]
    return float(np.mean(scores)) if scores else 0.0


def _truth(clip: clips.PeopleClip, walker: int, key: int, shape: tuple[int, ...]) -> np.ndarray:
    truth = clip.truths[walker][key].astype(np.uint8)
    return cv2.resize(truth, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _assert_apart(clip: clips.PeopleClip, people: list[Segmentation]) -> None:
    """Track i is walker i (walkers listed in order of appearance), whole, and no kept mask
    holds more than a sliver of anyone else (a merged or swapped track would)."""
    assert len(people) == len(clip.truths)
    for index, found in enumerate(people):
        assert found.track == index + 1
        own = _iou(clip, found, index)
        assert own >= MIN_IOU, (index, own)
        for key, mask in found.masks:
            for other in range(len(clip.truths)):
                if other != index:
                    theirs = (mask > 0) & _truth(clip, other, key, mask.shape)
                    assert theirs.sum() <= MAX_OTHER_SHARE * (mask > 0).sum(), (index, key)


def test_two_people_crossing_at_different_distances_are_two_tracks() -> None:
    near, far = clips.walker_masks(70, seed=1), clips.walker_masks(70, seed=2)
    clip = clips.people_clip(
        [
            clips.Walker(near, 0.1, 0.9, person_height=0.5, ground=0.92, colour=RED),
            clips.Walker(far, 0.9, 0.15, start=5, person_height=0.4, ground=0.8, colour=BLUE),
        ],
        80,
        height=240,
        width=320,
    )
    people = segment_people(_small(clip))
    _assert_apart(clip, people)
    for found in people:  # where they cross, both are dropped as overlapping
        assert found.dropped["overlap"] >= 3


def test_three_people_in_opposite_directions() -> None:
    walks = [clips.walker_masks(70, seed=s) for s in (3, 4, 5)]
    clip = clips.people_clip(
        [
            clips.Walker(walks[0], 0.1, 0.85, person_height=0.45, ground=0.9, colour=RED),
            clips.Walker(walks[1], 0.9, 0.1, start=4, person_height=0.4, ground=0.8, colour=BLUE),
            clips.Walker(walks[2], 0.9, 0.3, start=20, person_height=0.3, ground=0.6, colour=GREEN),
        ],
        90,
        height=240,
        width=320,
        seed=3,
    )
    _assert_apart(clip, segment_people(_small(clip)))


def test_one_person_stops_and_stands_while_the_other_walks() -> None:
    stander, walker = clips.walker_masks(60, seed=6), clips.walker_masks(70, seed=7)
    clip = clips.people_clip(
        [
            # walks in, stands for 40 frames, walks on
            clips.Walker(
                stander, 0.15, 0.65, person_height=0.45, ground=0.85, colour=BLUE, stands=(20, 60)
            ),
            clips.Walker(walker, 0.9, 0.1, start=10, person_height=0.5, ground=0.93, colour=RED),
        ],
        100,
        height=240,
        width=320,
        seed=6,
    )
    people = segment_people(_small(clip))
    _assert_apart(clip, people)
    standing = {key for key, _mask in people[0].masks} & set(range(25, 55))
    assert len(standing) >= 15  # standing still is still that person, followed


def test_a_person_who_enters_after_another_left_is_a_new_track() -> None:
    first, second = clips.walker_masks(40, seed=8), clips.walker_masks(40, seed=9)
    clip = clips.people_clip(
        [
            clips.Walker(first, 0.1, 0.9, person_height=0.5, ground=0.9, colour=RED),
            clips.Walker(second, 0.9, 0.1, start=50, person_height=0.5, ground=0.9, colour=BLUE),
        ],
        90,
        height=240,
        width=320,
        seed=8,
    )
    people = segment_people(_small(clip))
    _assert_apart(clip, people)
    assert people[0].span[1] < people[1].span[0]


def test_people_never_apart_are_refused_not_merged() -> None:
    left, right = clips.walker_masks(60, seed=10), clips.walker_masks(60, seed=11)
    clip = clips.people_clip(
        [  # side by side, a shoulder's width apart, the whole way
            clips.Walker(left, 0.1, 0.8, person_height=0.5, ground=0.9, colour=RED),
            clips.Walker(right, 0.17, 0.87, person_height=0.5, ground=0.91, colour=BLUE),
        ],
        60,
        height=240,
        width=320,
        seed=10,
    )
    with pytest.raises(IndistinctPeopleError, match="cannot be told apart"):
        segment_people(_small(clip))


def test_whose_walk_is_chosen_by_track() -> None:
    near, far = clips.walker_masks(70, seed=1), clips.walker_masks(50, seed=2)
    clip = clips.people_clip(
        [
            clips.Walker(near, 0.1, 0.9, person_height=0.5, ground=0.92, colour=RED),
            clips.Walker(far, 0.9, 0.3, start=5, person_height=0.4, ground=0.8, colour=BLUE),
        ],
        75,
        height=240,
        width=320,
    )
    frames = list(enumerate(read_frames(clips.encode_mp4(clip.frames))))
    default = read_walk(frames)
    assert default.person is not None and default.person.track == 1  # the most frames
    assert [p.track for p in default.people] == [1, 2]
    x, y, w, h = default.people[1].box  # in the clip's own pixels
    assert 0 < x < 320 and 0 < y < 240 and h > 0.3 * 240 and w < h
    chosen = read_walk(frames, front_end=FrontEnd(track=2))
    assert chosen.person is not None and chosen.person.track == 2
    assert chosen.sequence.used < default.sequence.used
    with pytest.raises(PersonChoiceError, match=r"2 people \(track 1 .*track 2"):
        read_walk(frames, front_end=FrontEnd(one_person_only=True))
    with pytest.raises(PersonChoiceError, match="track=3 is not in the clip"):
        read_walk(frames, front_end=FrontEnd(track=3))
    everyone = read_walks(frames)
    assert [r.person.track for r in everyone if r.person] == [1, 2]
    masks = [(i, (truth * 255).astype(np.uint8)) for i, truth in enumerate(clip.truths[0][:20])]
    assert read_walk(masks, front_end=FrontEnd(track=1)).kind == "silhouettes"
    with pytest.raises(PersonChoiceError, match="silhouettes hold one walk"):
        read_walk(masks, front_end=FrontEnd(track=2))


def test_a_learned_segmenter_tracks_everyone_the_same_way(tmp_path: Path) -> None:
    """The ONNX person segmenter's masks go through the same tracking (here it sees the red
    clothes of both walkers, and nothing of the scene)."""
    from gaitid.segment import OnnxPersonSegmenter

    near, far = clips.walker_masks(70, seed=1), clips.walker_masks(70, seed=2)
    clip = clips.people_clip(
        [
            clips.Walker(near, 0.1, 0.9, person_height=0.5, ground=0.92, colour=RED),
            clips.Walker(
                far, 0.9, 0.15, start=5, person_height=0.4, ground=0.8, colour=(230, 60, 90)
            ),
        ],
        80,
        height=240,
        width=320,
    )
    segmenter = OnnxPersonSegmenter(clips.red_person_onnx(tmp_path / "red.onnx"))
    _assert_apart(clip, segment_people(_small(clip), segmenter=segmenter))
