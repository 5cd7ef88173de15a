"""Restart persistence and concurrent enrolls/identifies: no lost row, index equal to SQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import Identity, Template
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import build_app, enroll, headers, identify, npz_upload, running


def test_restart_persistence(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()
        enroll(client, keys["enroll"], "ben", seed=2)
    with running(settings, embedder) as client:  # a new app on the same database
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["index_templates"] == 2
        best = identify(client, keys["identify"], seed=1).json()["matches"][0]
        assert (best["identity_id"], best["template_id"]) == (
            ann["identity_id"],
            ann["template_id"],
        )
        again = enroll(client, keys["enroll"], "ann", seed=1)
        assert again.status_code == 200  # dedup survives the restart


async def _hammer(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> dict[str, Any]:
    app = build_app(settings, embedder)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=120
        ) as client:
            # a first walk so identify has a gallery to search
            first = await client.post(
                "/enroll",
                headers=headers(keys["enroll"]),
                files={"file": npz_upload(1000)},
                data={"identity": "seed"},
            )
            assert first.status_code == 201, first.text

            async def enroll_one(i: int) -> httpx.Response:
                return await client.post(
                    "/enroll",
                    headers=headers(keys["enroll"]),
                    files={"file": npz_upload(i)},
                    data={"identity": f"p{i % 20}"},
                )

            async def identify_one(i: int) -> httpx.Response:
                return await client.post(
                    "/identify",
                    headers=headers(keys["identify"]),
                    files={"file": npz_upload(i)},
                    data={"top_k": "3"},
                )

            async def duplicate(_: int) -> httpx.Response:
                return await client.post(
                    "/enroll",
                    headers=headers(keys["enroll"]),
                    files={"file": npz_upload(2000)},
                    data={"identity": "dup"},
                )

            tasks = [enroll_one(i) for i in range(50)] + [identify_one(i) for i in range(50)]
            tasks += [duplicate(i) for i in range(8)]
            responses = await asyncio.gather(*tasks)
            check = (await client.get("/admin/index/check", headers=headers(keys["admin"]))).json()
            ready = (await client.get("/readyz")).json()
            metrics = (await client.get("/metrics")).text
    return {"responses": responses, "check": check, "ready": ready, "metrics": metrics}


def test_concurrent_enrolls_and_identifies(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    result = asyncio.run(_hammer(settings, embedder, keys))
    responses: list[httpx.Response] = result["responses"]
    enrolls, identifies, dups = responses[:50], responses[50:100], responses[100:]
    assert [r.status_code for r in enrolls] == [201] * 50, [
        r.text for r in enrolls if r.status_code != 201
    ]
    assert all(r.status_code == 200 for r in identifies), [
        r.text for r in identifies if r.status_code != 200
    ]
    assert sorted(r.status_code for r in dups) == [200] * 7 + [201]
    assert len({r.json()["template_id"] for r in dups}) == 1
    template_ids = {r.json()["template_id"] for r in enrolls}
    assert len(template_ids) == 50
    assert result["check"]["consistent"] is True
    assert result["check"]["db_templates"] == result["check"]["index_templates"] == 52
    assert result["ready"]["status"] == "ready"
    assert "gaitid_inference_batch_size_count" in result["metrics"]
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Template)) == 52
        assert session.scalar(select(func.count()).select_from(Identity)) == 22
    db.dispose()
    # the same walk is found first once the dust settles
    with running(settings, embedder) as client:
        for i in (0, 17, 49):
            best = identify(client, keys["identify"], seed=i).json()["matches"][0]
            assert best["identity"] == f"p{i % 20}"


async def _enroll_while_deleting(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> dict[str, Any]:
    app = build_app(settings, embedder)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=120
        ) as client:
            first = await client.post(
                "/enroll",
                headers=headers(keys["enroll"]),
                files={"file": npz_upload(0)},
                data={"identity": "victim"},
            )
            victim = first.json()["identity_id"]

            async def enroll_one(i: int) -> httpx.Response:
                return await client.post(
                    "/enroll",
                    headers=headers(keys["enroll"]),
                    files={"file": npz_upload(i)},
                    data={"identity": "victim"},
                )

            async def delete_later() -> httpx.Response:
                await asyncio.sleep(0.05)
                return await client.delete(f"/identities/{victim}", headers=headers(keys["admin"]))

            results = await asyncio.gather(*[enroll_one(i) for i in range(1, 21)], delete_later())
            check = (await client.get("/admin/index/check", headers=headers(keys["admin"]))).json()
    return {"enrolls": results[:-1], "delete": results[-1], "check": check}


def test_erasure_racing_enrolments_leaves_index_equal_to_sql(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    result = asyncio.run(_enroll_while_deleting(settings, embedder, keys))
    assert result["delete"].status_code == 204
    assert all(r.status_code == 201 for r in result["enrolls"]), [r.text for r in result["enrolls"]]
    assert result["check"]["consistent"] is True, result["check"]
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        survivors = session.scalar(select(func.count()).select_from(Template))
    db.dispose()
    assert survivors == result["check"]["index_templates"]
