"""Typed errors of the gaitid core, shared by the CLI, training and the service.

The hierarchy is what callers branch on, so it carries the HTTP meaning without importing
any web framework: the service maps :class:`UploadTooLargeError` to 413, any other
:class:`InvalidSequenceError` to 422, and the CLI maps both to ``EXIT_BAD_INPUT`` (2).
:class:`GaitidError` is the base of every deliberate error of the project, in ``model/``
and ``training/`` too (``tests/gaitid/test_errors.py`` checks it). Messages are written for
the person who sent the data: they name the bad value and what is allowed.
"""

from __future__ import annotations

#: Exit code of every ``gaitid`` command for bad input data or usage (typer's own code for a
#: bad command line), so scripts branch on one value.
EXIT_BAD_INPUT = 2


class GaitidError(Exception):
    """Base of every error the project raises on purpose."""


class InvalidSequenceError(GaitidError, ValueError):
    """The content of a silhouette sequence cannot be used (bad values, shape or dtype).

    Subclasses ``ValueError`` too, so generic callers that already catch bad values keep
    working.
    """


class TooFewFramesError(InvalidSequenceError):
    """Fewer frames than required survived preprocessing (empty frames are dropped)."""

    def __init__(
        self, usable: int, required: int, total: int | None = None, *, why: str | None = None
    ) -> None:
        self.usable = usable
        self.required = required
        self.total = total
        seen = f" of {total} received" if total is not None else ""
        why = why or (
            "frames with too little foreground are dropped; send more frames or masks "
            "where the person is white on a black background"
        )
        super().__init__(
            f"only {usable} usable silhouette frame(s){seen}; at least {required} are needed "
            f"({why})"
        )


class UploadError(InvalidSequenceError):
    """Any malformed upload; ``gaitid.decode`` raises only this family for bad bytes."""


class UploadFormatError(UploadError):
    """Empty bytes or a container that is not one of the supported formats."""


class CorruptUploadError(UploadError):
    """A supported container that cannot be read: truncated archive, broken image or video."""


class UnsafeArchiveError(UploadError):
    """An archive member that could escape a directory: ``../``, absolute paths, links."""


class UploadContentError(UploadError):
    """A readable upload whose arrays are unusable: wrong dtype or ndim, NaN, zero frames."""


class UploadTooLargeError(UploadError):
    """Bytes, frames, pixels, members or uncompressed size over a limit (HTTP 413)."""


class DecodeCancelledError(GaitidError):
    """Decoding stopped because the request it served is over (timed out or the client left).

    Not the sender's fault and never shown to anyone: the answer has already gone out. It
    exists so that a worker thread stops within one frame instead of finishing the upload.
    """
