"""Fixtures for the model tests: seeded tiny networks and padded walk batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaitid.contract import FRAME_HEIGHT, FRAME_WIDTH
from tests.utils.onnx_models import export_tiny_onnx


def make_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random silhouettes zero-padded to the longest walk, as ``batch_sequences`` builds them."""
    generator = torch.Generator().manual_seed(seed)
    steps = max(lengths)
    silhouettes = torch.zeros(len(lengths), steps, FRAME_HEIGHT, FRAME_WIDTH)
    for i, length in enumerate(lengths):
        silhouettes[i, :length] = torch.rand(length, FRAME_HEIGHT, FRAME_WIDTH, generator=generator)
    return silhouettes, torch.tensor(lengths, dtype=torch.int64)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("tiny-onnx"))
