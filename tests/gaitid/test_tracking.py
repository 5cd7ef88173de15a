"""Linking foreground components into people (``gaitid.tracking``): a person whose outline
comes apart in pieces is still one person in every frame (issue 24: 106 frames of people in
full view were dropped as ``overlap`` with themselves)."""

from __future__ import annotations

from gaitid.tracking import Blob, link

#: The walking person's box when seen whole (pixels of the working frame).
TOP, TALL, WIDE, STEP = 50, 100, 30, 4


def _whole(t: int) -> Blob:
    return Blob(1, 10 + STEP * t, TOP, WIDE, TALL, 2000)


def _halves(t: int) -> list[Blob]:
    """The person split at the waist (clothes like the background there): which half is the
    larger changes with the stride."""
    swing = 150 if t % 4 < 2 else -150
    x = 10 + STEP * t
    return [
        Blob(1, x, TOP, WIDE, 52, 1000 + swing),
        Blob(2, x + 2, TOP + 54, WIDE - 4, TALL - 54, 1000 - swing),
    ]


def test_a_person_split_at_the_waist_for_a_while_is_one_person_in_every_frame() -> None:
    frames = [[_whole(t)] if t < 10 or t >= 30 else _halves(t) for t in range(40)]
    tracks = link(frames)
    assert len(tracks) == 1
    (person,) = tracks
    assert sorted(person.blobs) == list(range(40))
    assert not person.overlap  # never "merged with another person": there is none
    assert all(person.blobs[t].h == TALL for t in (*range(10), *range(30, 40)))


def test_two_people_passing_in_front_of_each_other_for_one_frame_stay_two() -> None:
    """Stacking is judged over several frames: in one, a person's head over another's legs
    looks the same as a person split in two."""
    frames: list[list[Blob]] = []
    for t in range(30):
        left = Blob(1, 10 + STEP * t, TOP, WIDE, TALL, 2000)
        right = Blob(2, 200 - STEP * t, TOP + 60, WIDE, 90, 1800)
        frames.append([left, right])
    tracks = link(frames)
    assert len(tracks) == 2
