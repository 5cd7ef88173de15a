"""Issue 32: only the sender's errors are 4xx; a bug of ours is a logged 500."""

from __future__ import annotations

import logging

import pytest

from gaitid.contract import ContractError
from gaitid.decode.work import Work
from gaitid.errors import CorruptUploadError, InvalidSequenceError
from gaitid.service.config import Settings
from gaitid.service.errors import code_for, status_for
from gaitid.service.walks.inference import Embedder
from tests.utils import uploads
from tests.utils.service_app import assert_error, headers, running


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ValueError("a bug"), 500, "internal_error"),
        (ContractError("the model file is not a gaitid model"), 500, "internal_error"),
        (InvalidSequenceError("NaN in frame 3"), 422, "invalid_sequence"),
        (CorruptUploadError("truncated"), 422, "invalid_upload"),
    ],
)
def test_status_and_code_agree(error: Exception, status: int, code: str) -> None:
    assert (status_for(error), code_for(error)) == (status, code)


def test_a_bug_while_decoding_is_a_logged_500(
    settings: Settings,
    embedder: Embedder,
    keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: object) -> None:
        raise TypeError("a bug in our frame check")

    monkeypatch.setattr(Work, "check_frame", broken)
    masks = uploads.walking_masks(12, seed=3)
    with running(settings, embedder) as client, caplog.at_level(logging.ERROR):
        response = client.post(
            "/enroll",
            headers=headers(keys["enroll"]),
            data={"identity": "ann"},
            files={"file": ("walk.zip", uploads.encode_zip(masks), "application/zip")},
        )
    assert_error(response, 500, "internal_error")
    assert "a bug in our frame check" in caplog.text
