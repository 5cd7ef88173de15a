"""The one table of upload formats (``gaitid.formats``) and everything that lists them."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

from gaitid.commands import preprocess
from gaitid.decode import detect_format
from gaitid.formats import FORMATS, SUPPORTED_FORMATS
from gaitid.service.app import DESCRIPTION
from gaitid.service.walks.forms import WalkFile
from tests.utils import uploads

#: One upload of each format, made by the test helpers.
SAMPLES = {
    "zip": uploads.encode_zip,
    "tar": uploads.encode_tar,
    "npy": uploads.encode_npy,
    "tiff": uploads.encode_tiff,
    "video": uploads.encode_video,
    "image": lambda masks: uploads.encode_image(masks[0]),
}


def test_every_format_has_a_decoder_and_a_sample() -> None:
    assert sorted(f.name for f in FORMATS) == sorted(SAMPLES)
    for fmt in FORMATS:
        module = importlib.import_module(f"gaitid.decode.{fmt.name}")
        assert callable(module.open_upload), fmt.name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_format_is_recognised_by_its_magic_alone(name: str) -> None:
    masks = uploads.walking_masks(3, seed=1).astype(np.uint8)
    assert detect_format(SAMPLES[name](masks), filename="walk.bin") == name


def test_the_cli_and_the_api_list_the_table() -> None:
    assert SUPPORTED_FORMATS in DESCRIPTION
    description = WalkFile.__metadata__[0].description  # type: ignore[attr-defined]
    assert SUPPORTED_FORMATS in description
    src = inspect.signature(preprocess).parameters["src"].default
    assert SUPPORTED_FORMATS in src.help
