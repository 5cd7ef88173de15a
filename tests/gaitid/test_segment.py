"""The segmentation front end on composited clips: input kinds, mask IoU, refusals.

Every clip is composited here (``tests.utils.clips``): a walker's masks filled with a striped
garment, moved over a textured static scene with noise, lighting drift and mp4 encoding, so
the masks that made the clip are the truth the segmentation is measured against.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitid.decode import decode_upload, read_frames
from gaitid.errors import UploadContentError
from gaitid.segment import (
    BackgroundNeededError,
    FrontEnd,
    NoPersonFoundError,
    OnnxPersonSegmenter,
    SegmentationConfig,
    SegmenterError,
    WalkReading,
    detect_kind,
    read_walk,
    segment_clip,
    to_working_rgb,
)
from tests.utils import clips, uploads

#: The acceptance bar of issue 13 for composited crossing clips (frames aligned).
MIN_IOU = 0.85
REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "casia-b-train"


def _decoded_frames(data: bytes) -> list[tuple[int, np.ndarray]]:
    """The RGB frames a decoder gives for an upload (lossy codecs included), keyed by index."""
    return list(enumerate(read_frames(data)))


def _segment(
    clip: clips.Clip,
    *,
    with_scene: bool = False,
    mp4: bool = True,
    config: SegmentationConfig | None = None,
    **kwargs: object,
):
    config = config or SegmentationConfig()
    frames = _decoded_frames(clips.encode_mp4(clip.frames)) if mp4 else list(enumerate(clip.frames))
    small = [(key, to_working_rgb(frame, None, config)) for key, frame in frames]
    scene = clip.empty_scene if with_scene else None
    return small, segment_clip(small, background=scene, config=config, **kwargs)  # type: ignore[arg-type]


def _ious(clip: clips.Clip, small: list, found) -> list[float]:  # type: ignore[no-untyped-def]
    height, width = small[0][1].shape[:2]
    out = []
    for key, mask in found.masks:
        truth = clip.truth[key].astype(np.uint8) * 255
        truth = cv2.resize(truth, (width, height), interpolation=cv2.INTER_AREA) > 127
        out.append(clips.mask_iou(mask > 0, truth))
    return out


# ---------------------------------------------------------------------------- input kinds


@pytest.mark.parametrize("name", sorted({**uploads.LOSSLESS, **uploads.LOSSY}))
def test_silhouettes_in_every_format_are_told_apart_from_footage(name: str) -> None:
    encode = {**uploads.LOSSLESS, **uploads.LOSSY}[name]
    frames = [frame for _key, frame in _decoded_frames(encode(uploads.walking_masks(6, 90, 120)))]
    assert detect_kind(frames) == "silhouettes"


def test_footage_is_told_apart_from_silhouettes() -> None:
    clip = clips.crossing_clip(frames=10, seed=1)
    assert detect_kind(list(clip.frames)) == "video"
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames]
    assert detect_kind(grey) == "video"
    assert detect_kind([f for _k, f in _decoded_frames(clips.encode_mp4(clip.frames))]) == "video"


def test_pretreated_frames_are_silhouettes_whatever_their_values() -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (4, 64, 44), dtype=np.uint8)
    assert detect_kind(list(noisy)) == "silhouettes"


# ---------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("crossing", {"seed": 1}),
        ("noise and drift", {"seed": 7, "noise_sigma": 8.0, "drift": 0.3}),
        ("cast shadow", {"seed": 2, "shadow": True}),
        ("second moving object", {"seed": 3, "passer_by": True}),
        ("small person", {"seed": 9, "person_height": 0.35}),
        ("VGA camera", {"seed": 8, "height": 480, "width": 640}),
    ],
)
@pytest.mark.parametrize("with_scene", [False, True], ids=["median", "empty scene"])
def test_crossing_clips_are_segmented_close_to_the_truth(
    case: str, kwargs: dict[str, object], with_scene: bool
) -> None:
    clip = clips.crossing_clip(**kwargs)  # type: ignore[arg-type]
    small, found = _segment(clip, with_scene=with_scene)
    ious = _ious(clip, small, found)
    assert len(found.masks) >= 20, found.dropped
    assert float(np.mean(ious)) >= MIN_IOU, (case, float(np.mean(ious)))
    # the person enters and leaves the picture: those frames are dropped, not half-kept
    assert found.dropped["cut_by_border"] > 0 and found.dropped["no_person"] > 0


def test_frames_cut_at_the_side_are_kept_only_when_asked_and_wide_enough() -> None:
    clip = clips.crossing_clip(seed=1)
    _small, whole_only = _segment(clip, mp4=False)
    _small, with_cut = _segment(clip, mp4=False, config=SegmentationConfig(side_cut_min_width=0.5))
    kept = dict(with_cut.masks)
    whole = {key for key, _mask in whole_only.masks}
    cut = [key for key in kept if key not in whole]
    assert cut and with_cut.dropped["cut_by_border"] < whole_only.dropped["cut_by_border"]
    widths = {key: np.flatnonzero(mask.any(axis=0)) for key, mask in kept.items()}
    usual = float(np.median([w[-1] - w[0] + 1 for key, w in widths.items() if key not in cut]))
    for key in cut:
        columns = widths[key]
        touches = columns[0] <= 1 or columns[-1] >= kept[key].shape[1] - 2
        # half the usual width, with slack: the segmentation's median counts every tracked frame
        assert touches and columns[-1] - columns[0] + 1 >= 0.4 * usual, key
    # a frame cut at the side keeps the person's whole height: never one cut at top or bottom
    for key in cut:
        rows = np.flatnonzero(kept[key].any(axis=1))
        assert rows[0] > 1 and rows[-1] < kept[key].shape[0] - 2


def test_a_second_moving_object_is_not_merged_into_the_person() -> None:
    clip = clips.crossing_clip(seed=3, passer_by=True)
    _small, found = _segment(clip, mp4=False)
    for _key, mask in found.masks:
        rows = np.flatnonzero(mask.any(axis=1))
        assert rows[0] > clip.frames.shape[1] // 5  # nothing up where the cart runs


def test_towards_the_camera_needs_an_empty_scene_frame() -> None:
    clip = clips.crossing_clip(seed=4, towards_camera=True)
    with pytest.raises(BackgroundNeededError, match="empty-scene frame"):
        _segment(clip)
    small, found = _segment(clip, with_scene=True)
    assert len(found.masks) == len(clip.frames)
    assert float(np.mean(_ious(clip, small, found))) >= MIN_IOU


def test_a_person_walking_away_keeps_the_frames_where_they_are_small() -> None:
    """Crossing while walking away, from 48 % to 23 % of the picture by the time they leave
    it: the last frames show them under ``min_person_height`` (a quarter) but whole, the same
    person smaller, so every frame in full view is kept (``too_small`` dropped them)."""
    clip = clips.crossing_clip(seed=6, person_height=0.48, shrink=0.4)
    small, found = _segment(clip)
    assert found.dropped["too_small"] == 0
    heights = [int(np.ptp(np.flatnonzero(mask.any(axis=1)))) + 1 for _key, mask in found.masks]
    assert min(heights) < 0.25 * small[0][1].shape[0]  # frames under a quarter were kept
    assert float(np.mean(_ious(clip, small, found))) >= MIN_IOU


def test_a_person_cut_at_the_shoulders_now_and_then_keeps_those_frames_whole() -> None:
    """Every tenth frame the silhouette is cut across the shoulders (a band of 11 % of the
    person's height, as a CASIA-B silhouette broken at the neck): the head and shoulders are a
    detached part, further from the rest than 15 % of the rest's own height but not of the
    person's. Those frames are kept whole, not dropped as ``too_small`` pieces (065 bg-01 036
    and 065 nm-05 162 of the clip build, BENCHMARKS.md)."""
    masks = clips.walker_masks(60, seed=2)
    cut = set(range(5, 60, 10))
    for t in cut:
        height = masks[t].shape[0]
        masks[t] = masks[t].copy()
        masks[t][round(0.28 * height) : round(0.39 * height)] = False
    clip = clips.crossing_clip(seed=2, masks=masks, person_height=0.6)
    small, found = _segment(clip)
    assert found.dropped["too_small"] == 0
    kept = dict(found.masks)
    whole_in_view = [t for t in cut if t in kept]
    assert whole_in_view  # the cut frames in full view are there ...
    for t in whole_in_view:  # ... with the head, as tall as the truth
        rows = np.flatnonzero(kept[t].any(axis=1))
        scale = small[0][1].shape[0] / clip.truth.shape[1]  # working rows per clip row
        truth_rows = np.flatnonzero(clip.truth[t].any(axis=1)) * scale
        assert rows[-1] - rows[0] >= 0.9 * (truth_rows[-1] - truth_rows[0])


def test_a_person_never_a_quarter_of_the_picture_is_too_small() -> None:
    """Someone far away all through (a fifth of the picture) is not taken as a person: at that
    size a flicker or an object passes as one."""
    clip = clips.crossing_clip(seed=6, person_height=0.2)
    with pytest.raises(NoPersonFoundError, match="too small"):
        _segment(clip)


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data/casia-b-train is absent")
@pytest.mark.parametrize("walk", ["nm-01/090", "bg-01/072", "cl-01/108", "nm-05/036"])
def test_real_walks_composited_into_clips(walk: str) -> None:
    silhouettes = np.load(REAL_DATA / "063.npz")[walk]
    masks = clips.walk_masks(silhouettes)
    clip = clips.crossing_clip(frames=len(masks), seed=11, masks=masks, person_height=0.6)
    small, found = _segment(clip)
    assert float(np.mean(_ious(clip, small, found))) >= MIN_IOU


# ---------------------------------------------------------------------------- refusals


def test_a_clip_without_a_person_is_refused() -> None:
    clip = clips.crossing_clip(seed=5)
    empty = np.stack([clip.empty_scene] * 30)
    noisy = np.clip(empty + np.random.default_rng(0).normal(0, 4, empty.shape), 0, 255)
    with pytest.raises(NoPersonFoundError, match="no walking person"):
        decode_upload(clips.encode_mp4(noisy.astype(np.uint8)), "scene.mp4")


def test_a_photo_is_never_a_walk() -> None:
    photo = clips.crossing_clip(frames=30, seed=6).frames[15]
    for fmt in ("PNG", "JPEG"):
        data = uploads.encode_image(photo, fmt)  # type: ignore[arg-type]
        with pytest.raises(NoPersonFoundError):
            decode_upload(data, "photo.jpg")
    with pytest.raises(NoPersonFoundError):  # the same photo many times is not a walk either
        decode_upload(uploads.encode_zip(np.stack([photo] * 12), "JPEG"), "photos.zip")


def test_a_wide_moving_object_is_not_a_person() -> None:
    clip = clips.crossing_clip(seed=5, moving_box_only=True)
    frames = clip.frames.copy()
    height, width = frames.shape[1:3]
    for t in range(len(frames)):  # a car: wide, a third of the height, crossing the middle
        x = round(width * (-0.4 + 1.2 * t / (len(frames) - 1)))
        frames[t, height // 3 : 2 * height // 3, max(0, x) : max(0, x + width // 2)] = (30, 30, 140)
    with pytest.raises(NoPersonFoundError):
        decode_upload(clips.encode_mp4(frames), "car.mp4")


def test_an_empty_scene_frame_of_another_camera_is_refused() -> None:
    clip = clips.crossing_clip(frames=20, seed=1)
    wrong = cv2.resize(clip.empty_scene, (200, 200))
    with pytest.raises(UploadContentError, match="same camera"):
        decode_upload(clips.encode_mp4(clip.frames), front_end=FrontEnd(background=wrong))


# ---------------------------------------------------------------------------- the pipeline


def test_a_camera_clip_becomes_a_walk() -> None:
    clip = clips.crossing_clip(seed=1)
    result = decode_upload(clips.encode_mp4(clip.frames), "clip.mp4", min_frames=8)
    assert result.kind == "video" and result.frames.shape[1:] == (64, 44)
    assert result.total == 60 and result.used >= 30
    assert result.dropped == 60 - result.used
    assert set(result.drops) <= {"no_person", "cut_by_border", "too_small", "too_little_foreground"}
    assert sum(result.drops.values()) == result.dropped


def test_a_clip_past_the_working_memory_budget_is_read_at_half_the_height() -> None:
    """The held working frames are bounded while the clip is read: past the budget, the clip
    is held (and segmented) at half the height, and still gives the walk, with the person's
    box in the clip's own pixels."""
    clip = clips.crossing_clip(seed=1)  # 60 frames of 320x240: 13.8 MB at full size
    frames = list(enumerate(clip.frames))
    held: list[tuple[int, ...]] = []

    def read(budget: int) -> WalkReading:
        held.clear()
        config = SegmentationConfig(max_working_bytes=budget)
        front_end = FrontEnd(
            input="video",
            config=config,
            observer=lambda small, _found: held.extend(f.shape for _k, f in small),
        )
        return read_walk(frames, min_frames=8, front_end=front_end)

    whole = read(64 * 2**20)
    assert set(held) == {(240, 320, 3)}  # never enlarged to the 480-row working height
    halved = read(4 * 2**20)
    assert set(held) == {(120, 160, 3)}
    assert halved.person is not None and whole.person is not None
    assert halved.sequence.frames.shape[0] >= 0.8 * whole.sequence.frames.shape[0]
    box, full_box = np.array(halved.person.box), np.array(whole.person.box)
    assert np.abs(box - full_box).max() <= 4  # clip pixels, not working ones


@pytest.mark.parametrize("stands", [False, True])
def test_frames_segmented_in_parallel_give_the_same_masks(stands: bool) -> None:
    """Threads split the frames and the background's rows; a person standing for most of the
    clip also exercises the background's refinement (the median where they are not)."""
    # walks in, stands for 25 of the 60 frames (the median takes them for background there)
    walker = clips.Walker(
        clips.walker_masks(35, seed=6), 0.1, 0.9, person_height=0.5, stands=(15, 40)
    )
    clip = (
        clips.people_clip([walker], 60, height=240, width=320, seed=6)
        if stands
        else clips.crossing_clip(frames=30, seed=2)
    )
    small = [(i, to_working_rgb(f, None, SegmentationConfig())) for i, f in enumerate(clip.frames)]
    one = segment_clip(small, config=SegmentationConfig(threads=1))
    three = segment_clip(small, config=SegmentationConfig(threads=3))
    assert [k for k, _m in one.masks] == [k for k, _m in three.masks] and one.masks
    assert all(
        np.array_equal(a, b) for (_k, a), (_j, b) in zip(one.masks, three.masks, strict=True)
    )
    assert one.dropped == three.dropped


def test_frames_of_another_size_are_refused_when_they_arrive() -> None:
    clip = clips.crossing_clip(frames=12, seed=1)
    odd = cv2.resize(clip.frames[5], (160, 120))
    frames = [(i, f) for i, f in enumerate(clip.frames[:5])] + [(5, odd)]
    with pytest.raises(UploadContentError, match="differ in size"):
        read_walk(iter(frames), front_end=FrontEnd(input="video"))


def test_the_caller_can_override_the_guess() -> None:
    clip = clips.crossing_clip(frames=12, seed=1)
    data = clips.encode_mp4(clip.frames)
    forced = decode_upload(data, front_end=FrontEnd(input="silhouettes"))
    assert forced.kind == "silhouettes"  # taken as masks, as asked (not a useful walk)
    masks = uploads.encode_npy(uploads.walking_masks(8, 90, 120))
    assert decode_upload(masks, front_end=FrontEnd(input="auto")).kind == "silhouettes"


def test_too_few_frames_with_the_person_says_why() -> None:
    clip = clips.crossing_clip(seed=1)
    with pytest.raises(Exception, match="cut by border") as info:
        decode_upload(clips.encode_mp4(clip.frames), min_frames=59)
    assert type(info.value).__name__ == "TooFewFramesError"


# ---------------------------------------------------------------------------- learned segmenter


@pytest.mark.parametrize("size", [None, (96, 128)], ids=["dynamic size", "fixed size"])
def test_an_onnx_person_segmenter_with_the_contract(
    tmp_path: Path, size: tuple[int, int] | None
) -> None:
    model = clips.red_person_onnx(tmp_path / "seg.onnx", size)
    segmenter = OnnxPersonSegmenter(model)
    clip = clips.crossing_clip(seed=4, towards_camera=True)  # no background needed with it
    small, found = _segment(clip, segmenter=segmenter)
    assert float(np.mean(_ious(clip, small, found))) >= (MIN_IOU if size is None else 0.75)
    result = decode_upload(
        clips.encode_mp4(clip.frames), front_end=FrontEnd(segmenter=segmenter), min_frames=8
    )
    assert result.kind == "video"


def test_a_segmenter_that_breaks_the_contract_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SegmenterError, match="no segmenter model"):
        OnnxPersonSegmenter(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(SegmenterError, match="not a loadable ONNX model"):
        OnnxPersonSegmenter(tmp_path / "junk.onnx")
