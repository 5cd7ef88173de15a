"""The service embedding's closed-form fit: PCA + within-class whitening."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitid.cli import app
from gaitid.distance import l2_normalize
from gaitid.model import create_model
from gaitid.training.embedding_fit import EmbeddingFitError, fit_embedding, fit_reduction


def _nuisance_clusters(
    rng: np.random.Generator, identities: int, walks: int, dim: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Identity centres on small directions, plus a large per-walk nuisance on 3 others.

    Mirrors gait features: bag / coat / view move a walk far along a few directions that do
    not tell people apart.
    """
    centres = rng.normal(size=(identities, dim)) * 0.3
    centres[:, :3] = 0.0  # identity carries nothing on the nuisance directions
    labels = np.repeat(np.arange(identities), walks)
    x = centres[labels] + rng.normal(size=(labels.size, dim)) * 0.05
    x[:, :3] += rng.normal(size=(labels.size, 3)) * 3.0
    return x.astype(np.float32), labels


def _rank1(emb: np.ndarray, labels: np.ndarray) -> float:
    sim = l2_normalize(emb) @ l2_normalize(emb).T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(1)] == labels).mean())


def test_whitening_suppresses_within_identity_variation(rng: np.random.Generator) -> None:
    x, y = _nuisance_clusters(rng, identities=20, walks=6)
    # other identities than the fit saw: the reduction must generalise, not memorise people
    test_x, test_y = _nuisance_clusters(np.random.default_rng(99), identities=20, walks=6)
    reduction = fit_reduction(x, y, out_dim=16, regularization=0.01)
    plain = _rank1(test_x - reduction.mean, test_y)
    fitted = _rank1((test_x - reduction.mean) @ reduction.weight, test_y)
    assert plain < 0.6 and fitted > 0.95, (plain, fitted)


def test_within_class_covariance_becomes_isotropic(rng: np.random.Generator) -> None:
    x, y = _nuisance_clusters(rng, identities=10, walks=8, dim=12)
    reduction = fit_reduction(x, y, out_dim=12, regularization=1e-6)
    z = (x - reduction.mean) @ reduction.weight
    within = sum(
        (z[y == i] - z[y == i].mean(0)).T @ (z[y == i] - z[y == i].mean(0)) for i in range(10)
    ) / len(z)
    np.testing.assert_allclose(within, np.eye(12), atol=5e-3)  # float32 features


def test_gram_and_covariance_paths_agree(rng: np.random.Generator) -> None:
    """N < F takes the Gram route, N > F the covariance one: the same cosine geometry."""
    x, y = _nuisance_clusters(rng, identities=6, walks=5, dim=50)  # 30 walks < 50 dims
    wide = fit_reduction(x, y, out_dim=29, regularization=0.5)
    padded = np.concatenate([x, x + rng.normal(size=x.shape).astype(np.float32) * 1e-3])
    assert padded.shape[0] > x.shape[1]
    tall = fit_reduction(padded, np.concatenate([y, y]), out_dim=29, regularization=0.5)
    a = l2_normalize((x - wide.mean) @ wide.weight)
    b = l2_normalize((x - tall.mean) @ tall.weight)
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=0.05)


def test_small_fits_pad_with_zero_columns(rng: np.random.Generator) -> None:
    x, y = _nuisance_clusters(rng, identities=3, walks=3, dim=40)
    reduction = fit_reduction(x, y, out_dim=256)
    assert reduction.weight.shape == (40, 256) and reduction.pca_dims == 8  # N - 1
    assert not reduction.weight[:, 8:].any()
    assert 0.99 < reduction.explained_variance <= 1.0 + 1e-6
    assert reduction.walks == 9 and reduction.identities == 3


@pytest.mark.parametrize(
    ("rows", "labels", "message"),
    [
        (5, [0, 0, 0, 0, 0], "2 identities"),
        (2, [0, 1], "3 walks"),
        (4, [0, 1, 0], "one label per row"),
    ],
)
def test_unusable_training_sets_are_refused(rows: int, labels: list[int], message: str) -> None:
    with pytest.raises(EmbeddingFitError, match=message):
        fit_reduction(np.ones((rows, 6), np.float32), labels, out_dim=4)


def test_fit_embedding_installs_the_reduction_in_the_model(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = create_model("tiny")
    before = model.embedding_head.weight.clone()
    walks = [
        (rng.random((int(rng.integers(5, 12)), 64, 44)) > 0.5).astype(np.uint8) * 255
        for _ in range(12)
    ]
    labels = [i % 3 for i in range(12)]
    summary = fit_embedding(model, walks, labels, device=torch.device("cpu"), max_walks=9)
    head = model.embedding_head
    assert head.is_fitted and not torch.equal(head.weight, before)
    assert summary["walks"] == 9 and summary["identities"] == 3 and model.training
    out = model.eval()(torch.rand(2, 6, 64, 44), torch.tensor([6, 4]))
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))


def test_trainer_fits_the_embedding_after_the_last_iteration(uninterrupted: Path) -> None:
    from gaitid.model.export import load_checkpoint_model

    model, state = load_checkpoint_model(uninterrupted / "checkpoints" / "last.pt")
    assert model.embedding_head.is_fitted
    fit = state["meta"]["embedding_fit"]
    assert fit["identities"] == 2 and fit["walks"] == 20
    assert (uninterrupted / "embedding_fit.json").is_file()
    # the iteration-2 checkpoint predates the fit
    early, _ = load_checkpoint_model(uninterrupted / "checkpoints" / "iter-0000002.pt")
    assert not early.embedding_head.is_fitted


def test_fit_embedding_command_refits_a_checkpoint(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from gaitid.model.export import load_checkpoint_model

    source = uninterrupted / "checkpoints" / "iter-0000002.pt"
    out = tmp_path / "fitted.pt"
    result = CliRunner().invoke(
        app, ["fit-embedding", str(source), "--data", str(synthetic_root), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    model, state = load_checkpoint_model(out)
    assert model.embedding_head.is_fitted
    assert state["meta"]["embedding_fit"]["subjects"] == "001..002 (2)"
    unchanged, _ = load_checkpoint_model(source)
    assert not unchanged.embedding_head.is_fitted  # --out leaves the source alone


def test_export_refuses_an_unfitted_checkpoint(uninterrupted: Path, tmp_path: Path) -> None:
    source = uninterrupted / "checkpoints" / "iter-0000002.pt"
    refused = CliRunner().invoke(app, ["export", str(source), "--out", str(tmp_path / "m.onnx")])
    assert refused.exit_code != 0 and "fit-embedding" in refused.output
    allowed = CliRunner().invoke(
        app, ["export", str(source), "--out", str(tmp_path / "m.onnx"), "--allow-unfitted"]
    )
    assert allowed.exit_code == 0, allowed.output


def test_fit_embedding_command_reports_bad_input(uninterrupted: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(
        app,
        ["fit-embedding", str(uninterrupted / "checkpoints" / "last.pt"), "--data", str(empty)],
    )
    assert result.exit_code == 2 and "error:" in result.output


def test_fit_embedding_command_also_fits_on_clip_readings(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from gaitid.model.export import load_checkpoint_model

    source = str(uninterrupted / "checkpoints" / "iter-0000002.pt")
    # the synthetic root stands in for a clip-walks cache: the same layout, the same subjects
    extra = ["--clip-walks", str(synthetic_root), "--max-frames", "6"]
    result = CliRunner().invoke(
        app,
        [
            "fit-embedding",
            source,
            "--data",
            str(synthetic_root),
            "--out",
            str(tmp_path / "c.pt"),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    _, state = load_checkpoint_model(tmp_path / "c.pt")
    fit = state["meta"]["embedding_fit"]
    assert fit["walks"] == 40 and fit["identities"] == 2 and fit["clip_walks"] == "data"
