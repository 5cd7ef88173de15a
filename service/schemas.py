"""Request and response bodies of the API (pydantic), kept apart from the SQL tables.

Responses are built from logic results by the routes; nothing here touches the database.
Examples in ``json_schema_extra`` appear in the OpenAPI document (``/docs``).
"""

from __future__ import annotations

import functools
import json
import sys
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gaitid.contract import TestTimeShifts

GALLERY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
#: Identity names, views and conditions: any printable text (no control characters, which
#: PostgreSQL cannot store as NUL and which make logs and CSV exports ambiguous).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
ThresholdSource = Literal["request", "gallery", "model", "fallback"]
#: Which of the model's calibrations applies to an input: ``clip`` for walks segmented from
#: camera footage (the model's ``clip_threshold`` when it has one), else ``silhouettes``.
ThresholdRoute = Literal["silhouettes", "clip"]
_THRESHOLD_ROUTE = (
    "The input route: `clip` when the walk was segmented from camera footage, else "
    "`silhouettes`. The model's default for `clip` is its clip threshold when it has one; "
    "reported whatever the threshold's source."
)


def _storable_or_none(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else check_metadata(value)


#: A metadata object the database can store faithfully (``check_metadata``), or null.
StorableMetadata = Annotated[dict[str, Any] | None, AfterValidator(_storable_or_none)]

_EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_EXAMPLE_TIMINGS: dict[str, Any] = {
    "decode_ms": 4.1,
    "queue_ms": 0.8,
    "inference_ms": 21.5,
    "batch_size": 1,
    "search_ms": 0.3,
    "total_ms": 28.9,
}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timings(_Out):
    decode_ms: float = Field(description="Upload decoding and silhouette preprocessing.")
    queue_ms: float = Field(description="Wait for the micro-batcher.")
    inference_ms: float = Field(description="ONNX Runtime time of the batch this walk ran in.")
    batch_size: int = Field(description="Walks in that batch.")
    search_ms: float | None = Field(default=None, description="Index search and SQL lookup.")
    total_ms: float = Field(description="Whole request inside the service.")


class Box(_Out):
    """A box in the clip's own pixels."""

    x: int
    y: int
    w: int
    h: int


class TrackInfo(_Out):
    """One person followed through a camera clip."""

    track: int = Field(
        description="The person's number in the clip: 1, 2, ... in order of first appearance. "
        "Send it as `track` to enrol or verify this person's walk."
    )
    first_frame: int = Field(description="First frame the person was seen in (from 0).")
    last_frame: int = Field(description="Last frame the person was seen in.")
    box: Box = Field(description="Median box (x, y, w, h) over the frames used, in pixels.")


class InputReport(_Out):
    kind: Literal["silhouettes", "video"] = Field(
        description="How the upload was read: silhouette masks as they are, or camera footage "
        "segmented into masks first."
    )
    frames_seen: int = Field(description="Frames in the upload.")
    frames_used: int = Field(description="Frames the model saw.")
    frames_dropped: int
    dropped: dict[str, int] = Field(
        description="Why frames were dropped: no_person, cut_by_border, too_small, overlap "
        "(merged with another person; footage), too_little_foreground."
    )
    people: int = Field(default=1, description="People followed in the clip (1 for silhouettes).")
    track: TrackInfo | None = Field(
        default=None, description="Footage: the person whose walk this is."
    )
    tracks: list[TrackInfo] = Field(
        default_factory=list, description="Footage: everyone followed in the clip."
    )


_EXAMPLE_INPUT: dict[str, Any] = {
    "kind": "video",
    "frames_seen": 250,
    "frames_used": 180,
    "frames_dropped": 70,
    "dropped": {"no_person": 40, "cut_by_border": 30},
}


class EnrollResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "identity_id": 7,
                    "identity": "alice",
                    "gallery": "default",
                    "template_id": 42,
                    "created": True,
                    "frames_used": 58,
                    "frames_total": 60,
                    "frames_dropped": 2,
                    "model_version": "0.1.0",
                    "timings": _EXAMPLE_TIMINGS,
                    "input": _EXAMPLE_INPUT,
                }
            ]
        },
    )

    identity_id: int
    identity: str = Field(description="The caller's name or id for the person.")
    gallery: str
    template_id: int
    created: bool = Field(description="False when this content was already enrolled (HTTP 200).")
    frames_used: int
    frames_total: int
    frames_dropped: int
    model_version: str
    timings: Timings | None = Field(
        default=None, description="Absent when an existing template was returned."
    )
    input: InputReport | None = Field(
        default=None, description="How the upload was read; absent for an existing template."
    )


class Match(_Out):
    identity: str
    identity_id: int
    template_id: int = Field(description="The identity's best-scoring template.")
    score: float = Field(description="Cosine similarity in [-1, 1]; higher is more alike.")


class PersonMatches(_Out):
    """One person of a clip identified on their own (``/identify`` with ``people=all``)."""

    track: int = Field(description="The person's number in the clip (`input.tracks`).")
    first_frame: int
    last_frame: int
    frames_used: int
    box: Box | None = Field(
        description="Median box (x, y, w, h) over the frames used, in the clip's pixels "
        "(none for silhouettes)."
    )
    matches: list[Match] = Field(description="Best template per identity, best first.")
    decision: Literal["match", "unknown"]


class IdentifyResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "gallery": "default",
                    "matches": [
                        {"identity": "alice", "identity_id": 7, "template_id": 42, "score": 0.91},
                        {"identity": "bob", "identity_id": 9, "template_id": 51, "score": 0.42},
                    ],
                    "decision": "match",
                    "threshold": 0.5,
                    "threshold_source": "fallback",
                    "threshold_route": "clip",
                    "model_version": "0.1.0",
                    "frames_used": 60,
                    "input": _EXAMPLE_INPUT,
                    "timings": _EXAMPLE_TIMINGS,
                }
            ]
        },
    )

    gallery: str
    matches: list[Match] = Field(
        description="Best template per identity, best first (with `people=all`: of the person "
        "with the most usable frames)."
    )
    decision: Literal["match", "unknown"] = Field(
        description="'match' when the best score reaches the threshold."
    )
    threshold: float
    threshold_source: ThresholdSource
    threshold_route: ThresholdRoute = Field(description=_THRESHOLD_ROUTE)
    model_version: str
    frames_used: int
    input: InputReport
    timings: Timings
    people: list[PersonMatches] | None = Field(
        default=None,
        description="With `people=all`: every person followed in the clip with enough usable "
        "frames, in order of first appearance, each identified on their own.",
    )


class VerifyResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "identity_id": 7,
                    "identity": "alice",
                    "gallery": "default",
                    "score": 0.88,
                    "match": True,
                    "threshold": 0.4136,
                    "threshold_source": "model",
                    "threshold_route": "clip",
                    "template_id": 42,
                    "model_version": "0.1.0",
                    "frames_used": 60,
                    "input": _EXAMPLE_INPUT,
                    "timings": _EXAMPLE_TIMINGS,
                }
            ]
        },
    )

    identity_id: int
    identity: str
    gallery: str
    score: float = Field(description="Best cosine similarity over the identity's templates.")
    match: bool
    threshold: float
    threshold_source: ThresholdSource
    threshold_route: ThresholdRoute = Field(description=_THRESHOLD_ROUTE)
    template_id: int
    model_version: str
    frames_used: int
    input: InputReport
    timings: Timings


class TemplateInfo(_Out):
    id: int
    model_version: str
    stale: bool = Field(description="Embedded by another model: never compared until re-enrolled.")
    view: str | None
    condition: str | None
    metadata: dict[str, Any] | None
    frames_used: int
    frames_total: int
    content_sha256: str
    created_at: datetime


class IdentitySummary(_Out):
    id: int
    name: str
    gallery: str
    metadata: dict[str, Any] | None
    templates: int = Field(description="Templates of the current model.")
    stale_templates: int
    created_at: datetime
    updated_at: datetime


class IdentityDetail(IdentitySummary):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "name": "alice",
                    "gallery": "default",
                    "metadata": {"department": "R&D"},
                    "templates": 1,
                    "stale_templates": 0,
                    "created_at": "2025-11-25T10:00:00Z",
                    "updated_at": "2025-11-25T10:00:00Z",
                    "template_list": [
                        {
                            "id": 42,
                            "model_version": "0.1.0",
                            "stale": False,
                            "view": "090",
                            "condition": "nm-01",
                            "metadata": None,
                            "frames_used": 58,
                            "frames_total": 60,
                            "content_sha256": _EXAMPLE_SHA256,
                            "created_at": "2025-11-25T10:00:00Z",
                        }
                    ],
                }
            ]
        },
    )

    template_list: list[TemplateInfo]


class IdentityPage(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 7,
                            "name": "alice",
                            "gallery": "default",
                            "metadata": {"team": "blue"},
                            "templates": 2,
                            "stale_templates": 0,
                            "created_at": "2026-12-01T09:30:00Z",
                            "updated_at": "2026-12-01T09:30:00Z",
                        }
                    ],
                    "next_cursor": "AAAAAAAAAAc",
                }
            ]
        },
    )

    items: list[IdentitySummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class IdentityUpdate(BaseModel):
    """Fields to change; absent fields stay as they are, ``metadata: null`` clears it."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON as it is: false is not 0.0, "1" is not 1
        json_schema_extra={"examples": [{"name": "alice.smith", "metadata": {"team": "blue"}}]},
    )

    name: str | None = Field(default=None, min_length=1, max_length=256)
    metadata: StorableMetadata = None

    @field_validator("name")
    @classmethod
    def _unicode_name(cls, value: str | None) -> str | None:
        return None if value is None else identity_name(value)


class GalleryInfo(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "lobby",
                    "default_threshold": 0.62,
                    "metadata": {"site": "north"},
                    "identities": 12,
                    "templates": 30,
                    "created_at": "2026-12-01T09:30:00Z",
                }
            ]
        },
    )

    name: str
    default_threshold: float | None
    metadata: dict[str, Any] | None = None
    identities: int
    templates: int = Field(description="Templates of the current model.")
    created_at: datetime | None = None


class GalleryCreate(BaseModel):
    """A new gallery: its name, and optionally its default threshold and metadata."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON as it is: false is not 0.0, "1" is not 1
        json_schema_extra={
            "examples": [
                {"name": "lobby", "default_threshold": 0.62, "metadata": {"site": "north"}}
            ]
        },
    )

    name: str = Field(pattern=GALLERY_PATTERN, description="Letters, digits, _ . -; 1-128.")
    default_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    metadata: StorableMetadata = None


class GalleryUpdate(BaseModel):
    """Fields to change; absent fields stay as they are, ``null`` clears one."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON as it is: false is not 0.0, "1" is not 1
        json_schema_extra={
            "examples": [{"default_threshold": 0.62}, {"metadata": {"site": "south"}}]
        },
    )

    default_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    metadata: StorableMetadata = None


class HealthResponse(_Out):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class ReadinessChecks(_Out):
    database: bool
    model: bool
    index: bool = Field(
        description="Index holds exactly the current model's templates in SQL (after catching up"
        " with other processes' changes) and follows the change log."
    )


class ReadinessResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "checks": {"database": True, "model": True, "index": True},
                    "templates": 120,
                    "index_templates": 120,
                    "stale_templates": 0,
                    "model_version": "0.1.0",
                    "detail": None,
                }
            ]
        },
    )

    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks
    templates: int | None = Field(description="Current-model templates in SQL.")
    index_templates: int | None
    stale_templates: int | None = Field(description="Templates of other models (never compared).")
    model_version: str | None
    detail: str | None = None


class ModelSummary(_Out):
    name: str
    variant: str
    version: str
    sha256: str
    embedding_dim: int
    default_threshold: float | None
    clip_threshold: float | None = Field(
        description="The threshold walks segmented from camera footage are held to; null when "
        "the model has none (clips are then held to `default_threshold`). GET /model says how "
        "each was calibrated."
    )
    providers: list[str]


class IndexSummary(_Out):
    kind: str
    size: int
    galleries: int


class StatsResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": {
                        "name": "gaitid-lmgcs",
                        "variant": "lite",
                        "version": "0.1.0",
                        "sha256": _EXAMPLE_SHA256,
                        "embedding_dim": 256,
                        "default_threshold": 0.5646,
                        "clip_threshold": 0.5650,
                        "providers": ["CPUExecutionProvider"],
                    },
                    "galleries": 2,
                    "identities": 40,
                    "templates": 95,
                    "stale_templates": 0,
                    "index": {"kind": "flat", "size": 95, "galleries": 2},
                }
            ]
        },
    )

    model: ModelSummary
    galleries: int
    identities: int
    templates: int = Field(description="Templates of the current model.")
    stale_templates: int
    index: IndexSummary


class IndexCheckResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "consistent": True,
                    "db_templates": 95,
                    "index_templates": 95,
                    "missing_from_index": [],
                    "extra_in_index": [],
                }
            ]
        },
    )

    consistent: bool
    db_templates: int
    index_templates: int
    missing_from_index: list[int] = Field(description="First 100 ids in SQL but not the index.")
    extra_in_index: list[int] = Field(description="First 100 ids in the index but not in SQL.")


class IndexRebuildResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"templates": 95, "galleries": 2, "seconds": 0.04}]},
    )

    templates: int
    galleries: int
    seconds: float


#: Largest accepted ``metadata`` form field (JSON text).
MAX_METADATA_CHARS = 16 * 1024


def parse_metadata(text: str | None, what: str = "metadata") -> dict[str, Any] | None:
    """A JSON-object form field (``metadata``, ``filter``) as a dict; ``None`` when absent.

    Raises ``ValueError`` naming what is wrong; the route turns it into a 422.
    """
    if text is None or text.strip() == "":
        return None
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"{what} is {len(text)} characters; at most {MAX_METADATA_CHARS}")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object; got {type(value).__name__}")
    return check_metadata(value)


#: Digits of the longest integer metadata may hold: any 64-bit integer, sign included.
MAX_INT_DIGITS = 20


def _bounded_int(digits: str) -> int:
    """JSON integers beyond 64 bits are refused before Python converts them (a 5000-digit
    number would otherwise surface Python's own conversion-limit message)."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(
            f"metadata holds an integer of {len(digits.lstrip('-'))} digits; integers must fit "
            "in 64 bits"
        )
    return int(digits)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"metadata contains {name}; JSON numbers must be finite")


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Reject metadata a database cannot store faithfully (NUL characters, non-finite numbers,
    integers beyond 64 bits)."""
    if _has_huge_int(value):
        raise ValueError("metadata integers must fit in 64 bits")
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("metadata numbers must be finite (no NaN or Infinity)") from None
    except RecursionError:
        raise ValueError("metadata is nested too deeply") from None
    if "\\u0000" in text:
        raise ValueError("metadata must not contain NUL characters")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("metadata must be valid Unicode (no lone surrogates)") from None
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(
            f"metadata is {len(text)} characters as JSON; at most {MAX_METADATA_CHARS}"
        )
    return value


def _has_huge_int(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        raise ValueError("metadata is nested too deeply")
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return any(_has_huge_int(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_has_huge_int(v, depth + 1) for v in value)
    return False


#: Unicode categories a name may not hold, and how the error names them.
_REFUSED_IN_NAMES = {
    "Cc": "control character",
    "Cf": "format character (bidi override, zero-width, ...)",
    "Zl": "line separator",
    "Zp": "paragraph separator",
    "Cs": "lone surrogate",
}


def identity_name(value: str) -> str:
    """An identity name as stored and compared: NFC, trimmed, made of printable characters.

    NFC first, so that an NFD spelling of an existing name is that name and not a second
    identity; control and format characters (bidi overrides can make a name display as
    another), line separators and U+FFFD (what undecodable UTF-8 becomes) are refused with
    a message naming the character and its position.
    """
    text = unicodedata.normalize("NFC", value)
    # checked before trimming, so that a name is refused for the same characters wherever
    # they stand (as identity_name_pattern() says): "alice\n" is refused, not trimmed
    for position, char in enumerate(text):
        if char == "\ufffd":
            raise ValueError(
                f"the identity name holds U+FFFD at position {position}: its bytes were not "
                "valid UTF-8"
            )
        kind = _REFUSED_IN_NAMES.get(unicodedata.category(char))
        if kind is not None:
            label = unicodedata.name(char, "")
            raise ValueError(
                f"the identity name holds U+{ord(char):04X}{' ' + label if label else ''} ({kind}) "
                f"at position {position}"
            )
    text = text.strip()
    if not text:
        raise ValueError("an identity name must not be empty or whitespace only")
    return text


@functools.cache
def identity_name_pattern() -> str:
    """The regular expression of the names :func:`identity_name` accepts, for OpenAPI.

    Some character that is not whitespace, and none that is refused, built from the same
    table of Unicode categories (so from this Python's Unicode database). Whitespace is
    spelled out (``\\s`` means ASCII only in some engines); BMP code points are ``\\uXXXX``
    escapes, the others themselves. Lone surrogates are left out: no regex engine over code
    points can name them, and no UTF-8 form or JSON string of Unicode text carries them.
    """
    refused: list[int] = []
    spaces: list[int] = []
    for cp in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(cp))
        if category == "Cs":
            continue
        if cp == 0xFFFD or category in _REFUSED_IN_NAMES:
            refused.append(cp)
        elif chr(cp).isspace():
            spaces.append(cp)
    bad = _char_class(refused)
    return f"^[^{bad}]*[^{bad}{_char_class(spaces)}][^{bad}]*$"


def _char_class(code_points: list[int]) -> str:
    """The inside of a regex character class naming exactly ``code_points`` (sorted)."""
    ranges: list[tuple[int, int]] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))

    def char(cp: int) -> str:
        return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


def storable_text(value: str) -> str:
    """``value`` if it is valid Unicode (lone surrogates cannot be stored as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


class KeyCreate(BaseModel):
    """A new API key: who uses it, what it may do, and where."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON as it is: false is not 0.0, "1" is not 1
        json_schema_extra={
            "examples": [{"name": "lobby-camera", "scopes": ["identify"], "galleries": ["lobby"]}]
        },
    )

    name: str = Field(min_length=1, max_length=128, pattern=TEXT_PATTERN)
    scopes: list[Literal["identify", "enroll", "admin"]] = Field(min_length=1)
    galleries: list[Annotated[str, Field(pattern=GALLERY_PATTERN)]] | None = Field(
        default=None,
        description="Galleries the key is bound to (403 on any other); absent or empty: every "
        "gallery.",
    )


_EXAMPLE_KEY: dict[str, Any] = {
    "id": 3,
    "name": "lobby-camera",
    "prefix": "a1b2c3d4",
    "scopes": ["identify"],
    "galleries": ["lobby"],
    "created_at": "2026-12-01T09:30:00Z",
    "last_used_at": None,
    "revoked_at": None,
}


class KeyInfo(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [_EXAMPLE_KEY]},
    )

    id: int
    name: str
    prefix: str = Field(description="The key's public part, shown by `gaitid keys list`.")
    scopes: list[str]
    galleries: list[str] | None = Field(description="Bound galleries; null: every gallery.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyInfo):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**_EXAMPLE_KEY, "key": "gid_a1b2c3d4_8Qm..."}]},
    )

    key: str = Field(description="The secret key: shown this once, stored only as a hash.")


# --- what the console needs: the caller's own key, a preview, the model ---------------------
class OwnKey(_Out):
    """The key of the request, so a client shows only what the key may reach."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": 3, "name": "lobby-camera", "scopes": ["identify"], "galleries": ["lobby"]}
            ]
        },
    )

    id: int
    name: str
    scopes: list[Literal["identify", "enroll", "admin"]] = Field(
        description="What the key may do; admin implies identify and enroll."
    )
    galleries: list[str] | None = Field(description="Bound galleries; null: every gallery.")


class PreviewResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input": _EXAMPLE_INPUT,
                    "frames_used": 180,
                    "strip": "data:image/png;base64,iVBORw0KGgo...",
                    "strip_width": 384,
                    "strip_height": 264,
                }
            ]
        },
    )

    input: InputReport
    frames_used: int = Field(description="Frames the model would see (64x44 silhouettes).")
    strip: str = Field(
        description="PNG data URL of the preview strip (`gaitid preprocess --preview`): "
        "sampled frames with the followed person tinted, their masks and the final "
        "silhouettes (footage), or the final silhouettes only, then some dropped frames "
        "labelled with their reason."
    )
    strip_width: int
    strip_height: int


class ModelResponse(_Out):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "gaitid-lmgcs",
                    "variant": "lite",
                    "version": "0.1.0",
                    "sha256": _EXAMPLE_SHA256,
                    "embedding_dim": 256,
                    "threshold": 0.564612,
                    "threshold_source": "model",
                    "clip_threshold": 0.55768,
                    "training_data": "CASIA-B",
                    "test_time_shifts": "cross",
                    "det_picture": True,
                }
            ]
        },
    )

    name: str
    variant: str
    version: str
    sha256: str
    embedding_dim: int
    threshold: float = Field(
        description="The default decision threshold of silhouette uploads, before a "
        "gallery's or a request's."
    )
    threshold_source: Literal["model", "fallback"] = Field(
        description="`model`: calibrated, from the model file; `fallback`: "
        "GAITID_FALLBACK_THRESHOLD, the model carries none."
    )
    clip_threshold: float | None = Field(
        description="The model's threshold calibrated for walks segmented from camera footage "
        "(answers' `threshold_route: clip`); null when it has none and clips are held to "
        "`threshold`."
    )
    training_data: str
    test_time_shifts: TestTimeShifts = Field(
        description="What the model averages a walk's embedding over: `cross`, the frames as "
        "they are and moved one pixel up, down, left and right (five passes of the network); "
        "`none`, one pass."
    )
    det_picture: bool = Field(description="Whether `GET /model/det.png` has the DET picture.")
