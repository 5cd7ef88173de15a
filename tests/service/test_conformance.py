"""The API and its OpenAPI document agree: schemathesis with every check, against the app.

The same engine, configuration and checks as a newcomer's
``schemathesis run http://127.0.0.1:8000/openapi.json -H "X-API-Key: KEY" --checks all``
started from the repository root (which reads ``schemathesis.toml`` there), run in-process
against the ASGI app with an admin key: every phase (examples, coverage, fuzzing, stateful),
fixed seed, few examples. Any failed check, 5xx or engine error fails the test with the
reproduction schemathesis prints.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python.asgi import shutdown_lifespans

from gaitid.service.config import Settings
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import build_app

CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
SEED = 28


def conformance_failures(app: FastAPI, key: str, max_examples: int) -> list[str]:
    """Every failure of an all-checks schemathesis run against ``app``, as readable text."""
    project = tomllib.loads(CONFIG.read_text())
    config = SchemathesisConfig.from_dict(
        {
            **project,
            "seed": SEED,
            "headers": {"X-API-Key": key},
            "checks": {"enabled": True},  # --checks all
            "generation": {
                **project.get("generation", {}),
                "max-examples": max_examples,
                "deterministic": True,
            },
            "cache": {"enabled": False},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures: list[str] = []
    operations = 0
    answered: set[str] = set()  # operations that answered 2xx at least once
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                operations += 1
                failures += _failed_checks(event)
                answered |= _answered_2xx(event)
            elif isinstance(event, events.NonFatalError | events.FatalError):
                failures.append(f"engine error: {event}")
            elif isinstance(event, events.EngineFinished):
                failures += [f"after the run: {f.title}\n{f.message}" for f in event.failures]
    finally:
        shutdown_lifespans()  # the app's lifespan, started by schemathesis
    assert operations >= 20, f"schemathesis ran {operations} scenarios"
    # a run whose key stopped working tests nothing but 401s (the run once revoked its own key)
    failures += [f"{op}: never answered 2xx" for op in sorted(AUTHENTICATED_OPS - answered)]
    return failures


#: Operations that need the key and answer 2xx to any valid request.
AUTHENTICATED_OPS = frozenset({"GET /keys", "GET /galleries", "GET /stats", "GET /identities"})


def _answered_2xx(event: events.ScenarioFinished) -> set[str]:
    ops = set()
    for interaction in event.recorder.interactions.values():
        response = interaction.response
        if response is not None and 200 <= response.status_code < 300:
            path = interaction.request.uri.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
            ops.add(f"{interaction.request.method} /{path}")
    return ops


def _failed_checks(event: events.ScenarioFinished) -> list[str]:
    found: dict[tuple[str, str], str] = {}  # one report per check and failure kind
    for case_id, nodes in event.recorder.checks.items():
        interaction = event.recorder.interactions.get(case_id)
        response = interaction.response if interaction is not None else None
        answer = "" if response is None else f"-> {response.status_code} {response.content[:500]!r}"
        for node in nodes:
            if node.status == Status.FAILURE and node.failure_info is not None:
                failure: Any = node.failure_info.failure
                found.setdefault(
                    (node.name, failure.title),
                    f"{event.recorder.label}: {node.name}: {failure.title}\n{failure.message}\n"
                    f"{node.failure_info.code_sample}\n{answer}",
                )
    return list(found.values())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schemathesis_finds_nothing(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """All checks, every operation, a few examples each: no failure and no 5xx."""
    failures = conformance_failures(build_app(settings, embedder), keys["admin"], max_examples=5)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)


@pytest.mark.slow
def test_schemathesis_finds_nothing_thorough(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """The same with many more examples, on both databases (slow: minutes)."""
    failures = conformance_failures(build_app(settings, embedder), keys["admin"], max_examples=50)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
