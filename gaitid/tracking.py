"""Following every walking person through a clip: foreground components linked over time.

``gaitid.segment`` finds the foreground of each frame; this module links its connected
components (:class:`Blob`) into one track per person. It is a forward, frame-by-frame
association in the manner of SORT, with the foreground components in place of a detector's
boxes (no detector is downloaded or shipped):

- A track predicts where its person is from a velocity fitted to their last clean positions
  (a straight-line fit over ``_VELOCITY_FRAMES``: the box centre sways with the stride, so
  frame-to-frame differences would not do).
- A component continues a track when it lies within reach of the prediction (half the
  person's usual height, growing with every frame they were missed) and its size is like the
  previous component's or, when that was a fragment, like the person's usual one. The cost of
  a pair is the distance in reaches plus the appearance difference (Bhattacharyya distance of
  hue-saturation histograms); pairs are taken cheapest first.
- One component holding the predictions of two or more tracks is several people merged (two
  crossing, one passing behind another): every such track marks the frame as an ``overlap``
  and coasts on its velocity. The merged component's centre stands still while two people
  cross in opposite directions, so following it would send both tracks back the way they came;
  coasting carries each past the crossing to its own person when they part.
- A component that no track takes starts a new track, unless it lies over the columns of a
  component taken in the same frame (a detached head or hand, which the mask assembly joins
  to its person).
- A track missed for a few frames is found again only by a component of its colours (someone
  entering where another left is someone else). A track missed (neither seen on its own nor
  inside a merged component) for ``_MAX_GAP`` frames ends.
  Tracks seen in fewer than ``_MIN_FRAMES`` frames are flicker, not people: left out.

Tracks come out in order of first appearance; ``gaitid.segment`` turns each into one walk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

#: Appearance histogram: hue x saturation bins of the component's pixels.
_HIST_BINS: Final = (12, 4)
#: Weight of the appearance difference (0..1) against the distance (in reaches).
_APPEARANCE_WEIGHT: Final = 0.6
#: Clean positions the velocity is fitted to.
_VELOCITY_FRAMES: Final = 8
#: Frames a track may be missed (or merged with another person) before it ends.
_MAX_GAP: Final = 50
#: A track seen in fewer frames is flicker, not a person.
_MIN_FRAMES: Final = 4
#: How fast the person's usual height and area (the recent largest) forget, per frame: slow
#: enough to outlast a dozen frames in which the person is split in pieces.
_USUAL_DECAY: Final = 0.98
#: A merged component is at least this share of the usual area of each track it holds, and
#: each track it holds is at least ``_MERGED_SHARE`` of it (a fragment's track is no person).
_MERGED_AREA: Final = 0.8
_MERGED_SHARE: Final = 0.2
#: How fast a track's appearance follows its person's latest clean frames.
_APPEARANCE_RATE: Final = 0.2
#: A track missed for more than this many frames is found again only by a component that
#: looks like it: a Bhattacharyya distance of the colour histograms at most ``_OTHER_LOOK``
#: (the same clothes score about 0.1-0.3, other colours 0.7 and more).
_GATED_GAP: Final = 2
_OTHER_LOOK: Final = 0.6
#: A track is a piece of a larger one when, in this share of their common frames, it lies
#: over the larger's columns and the two span at most this many times the person's height
#: whole (``_is_piece``).
_PIECE_SHARE: Final = 0.6
_PIECE_REACH: Final = 1.15
#: Two components are stacked (one above the other) when their rows overlap by at most this
#: share of the shorter one's height.
_STACKED_OVERLAP: Final = 0.5
#: The percentile of a track's component heights taken as its person's height whole.
_WHOLE_PERCENTILE: Final = 90


@dataclass(frozen=True)
class Blob:
    """One connected component of a frame's foreground (box in working-frame pixels)."""

    label: int
    x: int
    y: int
    w: int
    h: int
    area: int
    #: normalised hue-saturation histogram of its pixels (appearance); None without colour
    hist: NDArray[np.float32] | None = None

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def contains(self, point: tuple[float, float]) -> bool:
        px, py = point
        return self.x <= px <= self.x + self.w and self.y <= py <= self.y + self.h

    def shares_columns(self, other: Blob) -> bool:
        return self.x < other.x + other.w and other.x < self.x + self.w


@dataclass(frozen=True)
class Track:
    """One person through the clip: their component per frame index (clean frames) and the
    frames where they were merged with another person (``merged``: the shared component)."""

    blobs: dict[int, Blob]
    merged: dict[int, Blob]

    @property
    def overlap(self) -> frozenset[int]:
        return frozenset(self.merged)

    @property
    def first(self) -> int:
        return min(self.blobs.keys() | self.overlap)

    @property
    def last(self) -> int:
        return max(self.blobs.keys() | self.overlap)


def appearance(
    rgb: NDArray[np.uint8], labels: NDArray[np.int32], blob: Blob
) -> NDArray[np.float32]:
    """The hue-saturation histogram of ``blob``'s pixels in ``rgb`` (sums to 1)."""
    box = (slice(blob.y, blob.y + blob.h), slice(blob.x, blob.x + blob.w))
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[box]), cv2.COLOR_RGB2HSV)
    mask = (labels[box] == blob.label).astype(np.uint8)
    hist = cv2.calcHist([hsv], [0, 1], mask, list(_HIST_BINS), [0, 180, 0, 256])
    total = float(hist.sum())
    return (hist / total if total > 0 else hist).astype(np.float32)


def link(frames: list[list[Blob]]) -> list[Track]:
    """Every person's track through ``frames`` (each frame's candidate components), in order
    of first appearance (module docstring)."""
    live: list[_Live] = []
    ended: list[_Live] = []
    for t, candidates in enumerate(frames):
        still: list[_Live] = []
        for track in live:
            (ended if t - track.seen_t > _MAX_GAP else still).append(track)
        live = still
        taken = _associate(t, live, candidates)
        for blob in candidates:
            if id(blob) in taken:
                continue
            parts_of = [b for b in candidates if id(b) in taken and b.area > blob.area]
            if any(blob.shares_columns(b) for b in parts_of):
                continue  # a detached part of a person taken in this frame
            live.append(_Live.start(t, blob))
    tracks = [(Track(dict(t.blobs), dict(t.merged)), t.merged) for t in ended + live]
    joined = _join_fragments(tracks)
    people = [track for track in joined if len(track.blobs) >= _MIN_FRAMES]
    return sorted(people, key=lambda track: track.first)


def _join_fragments(tracks: list[tuple[Track, dict[int, Blob]]]) -> list[Track]:
    """Tracks that are pieces of one person (split by clothing like the background, or by a
    background that took part of them) joined into one: in most frames both are seen, the
    smaller lies over the larger's columns and within its height. The frames where the
    pieces were "merged" are the person whole again."""
    remaining = sorted(tracks, key=lambda pair: -len(pair[0].blobs))
    out: list[Track] = []
    while remaining:
        main, main_merged = remaining.pop(0)
        blobs, overlap = dict(main.blobs), dict(main_merged)
        for pair in [pair for pair in remaining if _is_piece(pair[0], main)]:
            remaining.remove(pair)
            piece, piece_merged = pair
            for t, blob in piece.blobs.items():
                if t not in blobs or blob.area > blobs[t].area:
                    blobs[t] = blob
            for t, blob in {**piece_merged, **overlap}.items():
                if t not in blobs or blob.area > blobs[t].area:
                    blobs[t] = blob
            overlap = {}
        out.append(Track(blobs, overlap))
    return out


def _is_piece(piece: Track, main: Track) -> bool:
    """Whether ``piece`` is part of ``main``'s person: in most frames where both are seen, it
    lies over the larger's columns, the two together are no taller than the person whole, and
    it is either the smaller of the two or stacked above / below the other (a person split at
    the waist by clothes like the background: which half is the larger changes with the
    stride, and neither half alone is as tall as the person)."""
    shared = piece.blobs.keys() & main.blobs.keys()
    if not shared:
        return False
    # the person's height whole: judged on the tracks, not on the frame, where the larger
    # component may itself be a part (a person entering, or split in two)
    tall = max(_whole_height(main), _whole_height(piece))
    # stacking is judged over several frames: in one, a person passing in front of another's
    # legs looks the same
    may_stack = len(shared) >= _MIN_FRAMES
    inside = 0
    for t in shared:
        a, b = main.blobs[t], piece.blobs[t]
        top, bottom = min(a.y, b.y), max(a.y + a.h, b.y + b.h)
        common = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
        stacked = may_stack and common <= _STACKED_OVERLAP * min(a.h, b.h)
        inside += (
            (b.area < a.area or stacked)
            and a.shares_columns(b)
            and bottom - top <= _PIECE_REACH * tall
        )
    return inside >= _PIECE_SHARE * len(shared)


def _whole_height(track: Track) -> float:
    """The track's height when its person is seen whole (:func:`whole_height` of its
    components' heights)."""
    return whole_height([blob.h for blob in track.blobs.values()])


def whole_height(heights: Sequence[float]) -> float:
    """A person's height when seen whole, from their heights frame by frame: a high
    percentile, not the largest (which may be two people passing, or a shadow joined)."""
    return float(np.percentile(heights, _WHOLE_PERCENTILE))


def _associate(t: int, live: list[_Live], candidates: list[Blob]) -> set[int]:
    """Give frame ``t``'s components to the live tracks; returns the ids of those taken."""
    taken: set[int] = set()
    costs = {
        (i, j): cost
        for i, track in enumerate(live)
        for j, blob in enumerate(candidates)
        if (cost := track.cost(t, blob)) is not None
    }
    # Several people in one component: established tracks whose predicted centre it holds
    # (whatever its colours, which are mostly the nearer person's), unless a track has a
    # cheaper component of its own.
    best = {
        i: min((cost, j) for (ti, j), cost in costs.items() if ti == i)[1]
        for i in range(len(live))
        if any(ti == i for ti, _j in costs)
    }
    busy: set[int] = set()
    for j, blob in enumerate(candidates):
        inside = [
            i
            for i, track in enumerate(live)
            if track.established
            and best.get(i, j) == j
            and blob.contains(track.predicted(t))
            and blob.area >= _MERGED_AREA * track.usual
            and track.usual >= _MERGED_SHARE * blob.area
        ]
        if len(inside) >= 2:
            for i in inside:
                live[i].merged[t] = blob
                live[i].seen_t = t  # inside the merged component: alive, not lost
                busy.add(i)
            taken.add(id(blob))
    for (i, j), _cost in sorted(costs.items(), key=lambda item: item[1]):
        blob = candidates[j]
        if i in busy or id(blob) in taken:
            continue
        live[i].take(t, blob)
        busy.add(i)
        taken.add(id(blob))
    return taken


@dataclass
class _Live:
    """A track being followed."""

    blobs: dict[int, Blob]
    last: Blob
    last_t: int  # last clean frame: what the prediction starts from
    first_t: int
    seen_t: int  # last frame the person was seen in, clean or merged with others
    tall: float
    usual: float
    hist: NDArray[np.float32] | None
    history: list[tuple[int, float, float]] = field(default_factory=list)
    merged: dict[int, Blob] = field(default_factory=dict)  # overlap frames: the shared blob
    velocity: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def start(cls, t: int, blob: Blob) -> _Live:
        track = cls({}, blob, t, t, t, float(blob.h), float(blob.area), blob.hist)
        track.take(t, blob)
        return track

    def take(self, t: int, blob: Blob) -> None:
        self.blobs[t] = blob
        self.last, self.last_t, self.seen_t = blob, t, t
        self.tall = max(float(blob.h), _USUAL_DECAY * self.tall)
        self.usual = max(float(blob.area), _USUAL_DECAY * self.usual)
        self.history = [*self.history[-(_VELOCITY_FRAMES - 1) :], (t, *blob.centre)]
        self.velocity = _fitted_velocity(self.history)
        if blob.hist is not None:
            self.hist = (
                blob.hist
                if self.hist is None
                else (1 - _APPEARANCE_RATE) * self.hist + _APPEARANCE_RATE * blob.hist
            )

    @property
    def established(self) -> bool:
        return len(self.blobs) >= _MIN_FRAMES

    def predicted(self, t: int) -> tuple[float, float]:
        (cx, cy), (vx, vy) = self.last.centre, self.velocity
        gap = t - self.last_t
        return cx + vx * gap, cy + vy * gap

    def cost(self, t: int, blob: Blob) -> float | None:
        """Distance to the prediction in reaches plus the appearance difference; ``None``
        when ``blob`` cannot be this person (too far, or of another size)."""
        gap = t - self.last_t
        px, py = self.predicted(t)
        cx, cy = blob.centre
        reach = self.tall * (0.5 + 0.25 * gap)
        distance = float(np.hypot(cx - px, cy - py))
        grows = blob.area / max(self.last.area, 1)
        usual_share = blob.area / max(self.usual, 1.0)
        similar = 0.4 <= grows <= 2.5 or 0.25 <= usual_share <= 1.5
        if distance > reach or not (similar or blob.contains((px, py))):
            return None
        differs = 0.0
        if self.hist is not None and blob.hist is not None:
            differs = float(cv2.compareHist(self.hist, blob.hist, cv2.HISTCMP_BHATTACHARYYA))
        if gap > _GATED_GAP and differs > _OTHER_LOOK:
            return None  # found again after being missed, but dressed otherwise: someone else
        return distance / reach + _APPEARANCE_WEIGHT * differs


def _fitted_velocity(history: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Least-squares slope of x and y over t (pixels per frame); 0 with one position."""
    if len(history) < 2:
        return 0.0, 0.0
    points = np.asarray(history, np.float64)  # [n, (t, x, y)]
    ts = points[:, 0] - points[:, 0].mean()
    spread = float(ts @ ts)
    if spread == 0:
        return 0.0, 0.0
    vx, vy = (ts @ (points[:, 1:] - points[:, 1:].mean(axis=0))) / spread
    return float(vx), float(vy)
