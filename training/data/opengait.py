"""The OpenGait dataset layout and its partition file.

A dataset root holds one walk per folder, ``ROOT/<subject>/<condition>/<view>/<view>.pkl``,
each a pickled uint8 ``(T, 64, 64)`` array of height-normalised, centred silhouettes (the
output of OpenGait's pretreatment, and of ``gaitid pretreat`` / ``gaitid synth``). A partition
file ``{"TRAIN_SET": [...], "TEST_SET": [...]}`` names the subjects of each split.

The pickles are read with :mod:`pickle`, so they must be local files this project (or a
trusted tool such as OpenGait's pretreatment) wrote: never point these readers at client
uploads. Client data goes through ``gaitid.decode`` instead.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gaitid.training.data.errors import DatasetError, DatasetFormatError

logger = logging.getLogger(__name__)

#: Shape of one stored frame: OpenGait's pretreatment output (the network crops it to 64x44).
STORED_FRAME_SHAPE: Final = (64, 64)
#: Conventional name of the partition file beside the subject folders.
PARTITION_FILENAME: Final = "partition.json"


@dataclass(frozen=True, order=True)
class WalkKey:
    """Identifies one walk: subject id, condition with its index (``nm-01``) and view (``090``).

    The fields become folder names, so they must be non-empty and free of path separators.
    """

    subject: str
    condition: str
    view: str

    def __post_init__(self) -> None:
        for name in ("subject", "condition", "view"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or value in {".", ".."}:
                raise DatasetError(f"WalkKey.{name} must be a non-empty folder name, got {value!r}")
            if "/" in value or "\\" in value or value.startswith("."):
                raise DatasetError(
                    f"WalkKey.{name}={value!r} may not contain path separators or start with '.'"
                )

    @property
    def condition_type(self) -> str:
        """The condition without its index: ``"nm-05"`` -> ``"nm"``."""
        return self.condition.split("-", 1)[0]

    def relative_dir(self) -> Path:
        """``<subject>/<condition>/<view>``, the walk's folder below a dataset root."""
        return Path(self.subject, self.condition, self.view)

    def __str__(self) -> str:
        return f"{self.subject}/{self.condition}/{self.view}"


def validate_walk(frames: object, source: Path) -> NDArray[np.uint8]:
    """Check that ``frames`` is a uint8 ``(T>=1, 64, 64)`` array; ``source`` names it in errors."""
    if not isinstance(frames, np.ndarray):
        raise DatasetFormatError(source, f"expected a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise DatasetFormatError(source, f"expected dtype uint8, got {frames.dtype}")
    if frames.ndim != 3 or frames.shape[1:] != STORED_FRAME_SHAPE or frames.shape[0] < 1:
        raise DatasetFormatError(
            source,
            f"expected shape (T>=1, {STORED_FRAME_SHAPE[0]}, {STORED_FRAME_SHAPE[1]}), "
            f"got {frames.shape}",
        )
    return frames


def write_walk(root: Path, key: WalkKey, frames: NDArray[np.uint8]) -> Path:
    """Write one walk to ``ROOT/<subject>/<condition>/<view>/<view>.pkl`` and return the path.

    The file is written under a temporary name and renamed into place, so a crashed or
    parallel writer never leaves a truncated pickle that a later reader would trip on.
    """
    path = Path(root) / key.relative_dir() / f"{key.view}.pkl"
    validate_walk(frames, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(np.ascontiguousarray(frames), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_walk(path: Path) -> NDArray[np.uint8]:
    """Read one walk pickle (a trusted local file) and validate it as uint8 ``(T, 64, 64)``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            frames = pickle.load(handle)  # trusted local dataset files only, see module doc
    except FileNotFoundError as exc:
        raise DatasetFormatError(path, "walk file does not exist") from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        TypeError,
        ValueError,
    ) as exc:
        raise DatasetFormatError(path, f"not a readable pickle ({exc})") from exc
    return validate_walk(frames, path)


def _walk_file(view_dir: Path) -> Path | None:
    """The pickle of one walk folder: ``<view>.pkl``, else the only ``*.pkl``, else ``None``."""
    named = view_dir / f"{view_dir.name}.pkl"
    if named.is_file():
        return named
    pickles = sorted(p for p in view_dir.glob("*.pkl") if not p.name.startswith("."))
    if not pickles:
        return None
    if len(pickles) > 1:
        raise DatasetFormatError(
            view_dir,
            f"holds {len(pickles)} pickles {[p.name for p in pickles]} and no {named.name}; "
            "expected one walk per folder",
        )
    return pickles[0]


def _subdirs(path: Path) -> list[Path]:
    """Visible sub-folders of ``path``, sorted by name (files such as partition.json skipped)."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def index_dataset(root: Path) -> list[tuple[WalkKey, Path]]:
    """List every walk below ``root`` as ``(key, pickle path)``, sorted by key.

    Missing walks (absent or empty view folders, as in CASIA-B's known gaps) are skipped, and
    files beside the subject folders (the partition JSON, a README) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a directory")
    entries: list[tuple[WalkKey, Path]] = []
    for subject_dir in _subdirs(root):
        for condition_dir in _subdirs(subject_dir):
            for view_dir in _subdirs(condition_dir):
                walk = _walk_file(view_dir)
                if walk is None:
                    logger.debug("no walk in %s; skipped", view_dir)
                    continue
                key = WalkKey(subject_dir.name, condition_dir.name, view_dir.name)
                entries.append((key, walk))
    entries.sort(key=lambda item: item[0])
    return entries


def list_subjects(root: Path) -> list[str]:
    """Subject ids (folder names) of a dataset root, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a directory")
    return [p.name for p in _subdirs(root)]


def load_dataset(
    root: Path,
    subjects: Iterable[str] | None = None,
    keep: Callable[[WalkKey], bool] | None = None,
) -> dict[WalkKey, NDArray[np.uint8]]:
    """Load every walk of ``root`` (or of the given ``subjects``; of those, the walks ``keep``
    accepts) into memory as uint8 arrays. ``keep`` is asked before a file is read, so walks
    nobody uses cost no time.

    Asking for a subject that has no folder is an error rather than an empty result, because
    a silently smaller test set would inflate any accuracy computed on it.
    """
    root = Path(root)
    index = index_dataset(root)
    if subjects is not None:
        wanted = set(subjects)
        present = {key.subject for key, _ in index}
        missing = sorted(wanted - present)
        if missing:
            raise DatasetError(
                f"subjects {missing} have no walks under {root}; "
                f"it has {len(present)} subjects ({', '.join(sorted(present)[:5])}, ...)"
            )
        index = [(key, path) for key, path in index if key.subject in wanted]
    return {key: load_walk(path) for key, path in index if keep is None or keep(key)}


def draw_walks(
    root: Path, subjects: Iterable[str] | None, count: int, seed: int
) -> list[NDArray[np.uint8]]:
    """``count`` walks of ``subjects`` (every subject when ``None``) drawn at random without
    replacement and loaded in the dataset's order: one seed, one draw, so the int8
    calibration (``gaitid quantize``) and its benchmark read the same walks."""
    wanted = None if subjects is None else set(subjects)
    found = [path for key, path in index_dataset(root) if wanted is None or key.subject in wanted]
    if not found:
        named = ", ".join(sorted(wanted)) if wanted is not None else "any"
        raise DatasetError(f"no walks under {root} for subjects {named}")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(found), min(count, len(found)), replace=False).tolist())
    return [load_walk(found[i]) for i in picked]


class Partition(BaseModel):
    """Train/test subject split; serialised as OpenGait's ``{"TRAIN_SET", "TEST_SET"}`` JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    train_set: list[str] = Field(alias="TRAIN_SET")
    test_set: list[str] = Field(alias="TEST_SET")

    @model_validator(mode="after")
    def _disjoint_and_unique(self) -> Partition:
        for name, ids in (("TRAIN_SET", self.train_set), ("TEST_SET", self.test_set)):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"{name} lists subjects more than once: {duplicates}")
        overlap = sorted(set(self.train_set) & set(self.test_set))
        if overlap:
            raise ValueError(f"subjects {overlap} are in both TRAIN_SET and TEST_SET")
        return self


def load_partition(path: Path) -> Partition:
    """Read an OpenGait partition JSON; malformed files raise :class:`DatasetFormatError`."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetFormatError(path, "partition file does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(path, f"not valid JSON ({exc})") from exc
    try:
        return Partition.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'partition'}: {err['msg']}"
            for err in exc.errors()
        )
        raise DatasetFormatError(
            path, f"not a partition {{'TRAIN_SET': [...], 'TEST_SET': [...]}}: {problems}"
        ) from exc


def save_partition(partition: Partition, path: Path) -> Path:
    """Write ``partition`` as OpenGait's JSON (``TRAIN_SET`` / ``TEST_SET`` keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(partition.model_dump(by_alias=True), indent=2) + "\n", encoding="utf-8"
    )
    return path


def parse_subject_spec(spec: str) -> list[str]:
    """Subject ids from ``"063-074"`` / ``"001,005-009"``; ranges keep the ids' zero padding."""
    ids: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "-" in part:
            first, _, last = part.partition("-")
            if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
                raise DatasetError(
                    f"subject range {part!r} must be FIRST-LAST with numeric FIRST <= LAST"
                )
            width = len(first)
            ids += [f"{i:0{width}d}" for i in range(int(first), int(last) + 1)]
        else:
            ids.append(part)
    if not ids:
        raise DatasetError(f"no subjects in {spec!r}; use e.g. '063-074' or '001,005-009'")
    return list(dict.fromkeys(ids))
