"""The upload routes' multipart forms: text fields that must be valid UTF-8, and the fields
that say how to read an upload (``input``, ``background``).

Starlette decodes a text field that is not valid in the request's charset as latin-1
instead, so invalid UTF-8 in an identity name would be stored as mojibake that no client
can type again. The upload routes parse their forms with :class:`StrictFormRoute`, which
refuses such a field with a 422 naming it. A client that declares another charset in the
``Content-Type`` (``charset=latin-1``) is decoded in that charset, as before.

The file fields (``file``, ``background``) are files whether or not their part names a
filename: the OpenAPI document calls them binary strings, and a client (or a generic one
such as schemathesis) may send one as a plain part. Without this, such a part reached the
route as text and the answer was a 422 naming a Python class.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from tempfile import SpooledTemporaryFile
from typing import Annotated, Any

from fastapi import File, Form, Request, Response, UploadFile
from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from gaitid.formats import SUPPORTED_FORMATS
from gaitid.segment import InputChoice, People
from gaitid.service.errors import InvalidRequestError
from gaitid.service.walks.uploads import WalkChoice

#: The form fields of the upload routes that hold files (``WalkFile``, ``BackgroundField``).
FILE_FIELDS = frozenset({"file", "background"})


class TextFieldEncodingError(MultiPartException):
    """A text field's bytes are not valid in the form's charset."""


class _StrictMultiPartParser(MultiPartParser):
    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is None and part.field_name in FILE_FIELDS:
            # a file field sent without a filename: spooled like any file, never decoded as text
            # the form owns the file once parsed and closes it (as Starlette's own file parts)
            spool = SpooledTemporaryFile(max_size=self.spool_max_size)  # noqa: SIM115
            self._files_to_close_on_error.append(spool)
            headers = Headers(raw=part.item_headers)
            part.file = UploadFile(file=spool, size=0, headers=headers)  # type: ignore[arg-type]

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset)
            except UnicodeDecodeError as exc:
                raise TextFieldEncodingError(
                    f"form field {part.field_name!r} is not valid {self._charset}: byte "
                    f"0x{part.data[exc.start]:02x} at offset {exc.start}; send text fields "
                    "as UTF-8"
                ) from exc
        super().on_part_end()


class StrictFormRequest(Request):
    """A request whose multipart form refuses text fields that are not valid text."""

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is None and content_type == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    parser = _StrictMultiPartParser(
                        self.headers,
                        stream,
                        max_files=max_files,
                        max_fields=max_fields,
                        max_part_size=max_part_size,
                    )
                    self._form = await parser.parse()
            except TextFieldEncodingError as exc:
                raise HTTPException(status_code=422, detail=exc.message) from exc
            except MultiPartException as exc:
                raise HTTPException(status_code=400, detail=exc.message) from exc
        return await super()._get_form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
        )


class StrictFormRoute(APIRoute):
    """An ``APIRoute`` whose handler sees a :class:`StrictFormRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictFormRequest(request.scope, request.receive))

        return strict_handler


#: The ``file`` field of the upload routes: the walk itself.
WalkFile = Annotated[
    UploadFile,
    File(description=f"The walk: silhouettes or a camera clip, as any of: {SUPPORTED_FORMATS}."),
]
#: The ``input`` form field of the upload routes: how to read the uploaded walk.
InputField = Annotated[
    InputChoice,
    Form(
        alias="input",
        description="How to read the upload: `auto` tells silhouette masks from camera "
        "footage; `silhouettes` takes the frames as masks; `video` segments the walking "
        "person out of camera footage first.",
    ),
]
#: The ``background`` file field: an empty-scene frame of the camera, for footage.
BackgroundField = Annotated[
    UploadFile | None,
    File(
        description="Optional empty-scene frame of the same camera (PNG/JPEG/BMP), for "
        "footage: needed when the person walks towards or away from the camera. An empty "
        "part is no background."
    ),
]
#: The ``people`` form field of ``/identify``: whose walk a clip with several people gives.
PeopleField = Annotated[
    People,
    Form(
        description="Footage with several people: `one` identifies the person with the most "
        "usable frames (`input.people` says how many were seen); `all` identifies every "
        "person followed, each in the `people` list of the answer."
    ),
]
#: The ``track`` form field: one person of a clip with several people.
TrackField = Annotated[
    int | None,
    Form(
        ge=1,
        le=1000,
        description="Footage with several people: whose walk this is, by their number in the "
        "clip (`track` of `input.tracks` or of an identify answer's `people`). Enrol and "
        "verify refuse a clip of several people without it.",
    ),
]


def walk_choice(people: People, track: int | None, *, what: str) -> WalkChoice:
    """The ``people`` and ``track`` fields as one choice; a 422 when both are given (``track``
    picks one person, ``people=all`` asks for everyone: ``what`` says what the route does)."""
    if people == "all" and track is not None:
        raise InvalidRequestError(
            f"track chooses one person and people=all {what} everyone: send one of them"
        )
    return WalkChoice(people=people, track=track)
