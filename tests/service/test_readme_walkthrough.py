"""The README's curl walkthrough, run on the shipped model: the scores it quotes are real.

The README tells a new user what the two synthetic people score against each other with the
shipped model. Those figures change whenever the model does; this test runs the same commands
(`gaitid synth`, `gaitid preprocess`, enroll, identify, verify) through the app and reads the
quoted figures back out of the README, so a new model cannot ship with a stale walkthrough.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gaitid.cli import build_app as build_cli
from gaitid.service.config import SHIPPED_MODEL, Settings
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import headers, make_keys, npy_bytes, running

README = Path(__file__).resolve().parents[2] / "README.md"

#: "alice's second walk ranks alice first (score 0.756) ahead of bob (0.587), decision `match`
#: at the model's threshold 0.4824"
_CLAIM = re.compile(
    r"ranks alice first \(score (?P<alice>\d\.\d{3})\) ahead of bob\s+\((?P<bob>\d\.\d{3})\),"
    r"\s+decision `match` at the model's threshold (?P<threshold>\d\.\d{4})"
)


def _quoted() -> dict[str, float]:
    found = _CLAIM.search(README.read_text())
    assert found, "README.md no longer quotes the walkthrough's scores in the expected words"
    return {name: float(value) for name, value in found.groupdict().items()}


def _cli(args: list[str]) -> None:
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def walks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The README's three preprocessed walks: alice's two and bob's first."""
    root = tmp_path_factory.mktemp("walkthrough")
    demo, raw = root / "demo", root / "demo-raw"
    walkers = ["--subjects", "2", "--views", "090", "--conditions", "nm-01,nm-02"]
    _cli(["synth", *walkers, "--out", str(demo), "--raw", str(raw)])
    sources = {"alice1": "001/nm-01/090", "alice2": "001/nm-02/090", "bob1": "002/nm-01/090"}
    arrays = {}
    for name, walk in sources.items():
        out = root / f"{name}.npy"
        _cli(["preprocess", str(raw / walk), "--out", str(out)])
        arrays[name] = np.load(out)
    return arrays


def test_the_readme_walkthrough_scores_are_the_shipped_models(
    tmp_path: Path, sqlite_template: Path, walks: dict[str, np.ndarray]
) -> None:
    quoted = _quoted()
    database = tmp_path / "gaitid.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{database}", intra_op_threads=1
    )
    assert settings.resolved_model_path == SHIPPED_MODEL  # the default, as `make serve` runs
    key = make_keys(settings)["admin"]
    with running(settings, Embedder(SHIPPED_MODEL, device="cpu")) as client:
        for name, identity in (("alice1", "alice"), ("bob1", "bob")):
            response = client.post(
                "/enroll",
                headers=headers(key),
                files={"file": (f"{name}.npy", npy_bytes(walks[name]))},
                data={"identity": identity},
            )
            assert response.status_code == 201, response.text
        probe = {"file": ("alice2.npy", npy_bytes(walks["alice2"]))}
        identified = client.post(
            "/identify", headers=headers(key), files=probe, data={"top_k": "5"}
        )
        verified = client.post(
            "/verify", headers=headers(key), files=probe, data={"identity": "alice"}
        )
    assert identified.status_code == 200, identified.text
    body = identified.json()
    scores = {match["identity"]: match["score"] for match in body["matches"]}
    assert [match["identity"] for match in body["matches"]] == ["alice", "bob"]
    assert round(scores["alice"], 3) == quoted["alice"]
    assert round(scores["bob"], 3) == quoted["bob"]
    assert body["threshold_source"] == "model"
    assert round(body["threshold"], 4) == quoted["threshold"]
    assert verified.status_code == 200, verified.text
    assert verified.json()["match"] is True
