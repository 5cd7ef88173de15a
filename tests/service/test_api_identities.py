"""/identities, /templates, /galleries: pagination, updates, erasure semantics."""

from __future__ import annotations

from sqlalchemy import select

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import AuditLog, Identity, Template
from gaitid.service.identities import encode_cursor
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import assert_error, enroll, headers, identify, running


def test_pagination_and_gallery_filter(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        for i in range(7):
            enroll(client, keys["enroll"], f"p{i}", seed=i, gallery="a" if i % 2 else "b")
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/identities", headers=headers(keys["enroll"]), params=params).json()
            assert len(page["items"]) <= 3
            seen += [item["name"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"p{i}" for i in range(7)]
        only_a = client.get(
            "/identities", headers=headers(keys["enroll"]), params={"gallery": "a"}
        ).json()
        assert [i["name"] for i in only_a["items"]] == ["p1", "p3", "p5"]
        assert all(i["gallery"] == "a" and i["templates"] == 1 for i in only_a["items"])
        assert_error(
            client.get("/identities", headers=headers(keys["enroll"]), params={"gallery": "zzz"}),
            404,
        )
        # every cursor of the documented shape is one: past the last id, an empty page
        for after_all in (encode_cursor(2**63 - 1), "__________8"):
            page = client.get(
                "/identities", headers=headers(keys["enroll"]), params={"cursor": after_all}
            )
            assert page.status_code == 200 and page.json()["items"] == [], page.text
        for bad in ("garbage", "eyJhZnRlciI6ICJ4In0", "e30", "AAAAAAAAAA!", "AAAAAAAAAAAA"):
            assert_error(
                client.get("/identities", headers=headers(keys["enroll"]), params={"cursor": bad}),
                422,
            )
        assert_error(
            client.get("/identities", headers=headers(keys["enroll"]), params={"limit": 0}), 422
        )
        assert_error(client.get(f"/identities/{2**63}", headers=headers(keys["admin"])), 422)
        assert_error(client.delete(f"/templates/{2**70}", headers=headers(keys["admin"])), 422)


def test_search_by_name_or_metadata(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 27: ``q`` keeps identities whose name or metadata holds it, ignoring case, and
    pages as without it (the console's search)."""
    with running(settings, embedder) as client:
        people = {"Nora": {"site": "North", "team": "blue"}, "sam": {"site": "south"}}
        for seed, (name, metadata) in enumerate(people.items(), start=1):
            created = enroll(client, keys["enroll"], name, seed=seed).json()
            r = client.patch(
                f"/identities/{created['identity_id']}",
                headers=headers(keys["enroll"]),
                json={"metadata": metadata},
            )
            assert r.status_code == 200, r.text
        # a template's metadata is the walk's, not the person's: not searched
        enroll(client, keys["enroll"], "ann_x", seed=3, metadata='{"site": "blue south"}')
        enroll(client, keys["enroll"], "nils", seed=4, gallery="other")

        def found(q: str, **params: str | int) -> list[str]:
            r = client.get(
                "/identities", headers=headers(keys["enroll"]), params={"q": q, **params}
            )
            assert r.status_code == 200, r.text
            return [item["name"] for item in r.json()["items"]]

        assert found("nor", gallery="default") == ["Nora"]
        assert found("SOUTH") == ["sam"]
        assert found("blue") == ["Nora"]
        assert found("_") == ["ann_x"]  # a literal underscore, not LIKE's wildcard
        assert found("%") == [] and found("\\") == []
        assert found("n") == ["Nora", "ann_x", "nils"]
        first = client.get(
            "/identities", headers=headers(keys["enroll"]), params={"q": "n", "limit": 2}
        ).json()
        assert [i["name"] for i in first["items"]] == ["Nora", "ann_x"]
        assert found("n", cursor=first["next_cursor"]) == ["nils"]
        assert_error(
            client.get("/identities", headers=headers(keys["enroll"]), params={"q": "x" * 257}),
            422,
        )


def test_get_and_patch_identity(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()
        enroll(client, keys["enroll"], "ben", seed=2)
        url = f"/identities/{ann['identity_id']}"
        r = client.patch(url, headers=headers(keys["enroll"]), json={"metadata": {"team": "blue"}})
        assert (
            r.status_code == 200
            and r.json()["metadata"] == {"team": "blue"}
            and r.json()["name"] == "ann"
        )
        r = client.patch(url, headers=headers(keys["enroll"]), json={"name": "ann-marie"})
        assert r.json()["name"] == "ann-marie" and r.json()["metadata"] == {"team": "blue"}
        r = client.patch(url, headers=headers(keys["enroll"]), json={"metadata": None})
        assert r.json()["metadata"] is None
        assert_error(
            client.patch(url, headers=headers(keys["enroll"]), json={"name": "ben"}),
            409,
            "conflict",
        )
        assert_error(
            client.patch(url, headers=headers(keys["enroll"]), json={"colour": "red"}), 422
        )
        assert_error(client.patch(url, headers=headers(keys["enroll"]), json={"name": ""}), 422)
        assert_error(client.patch("/identities/999", headers=headers(keys["enroll"]), json={}), 404)
        assert_error(
            client.get("/identities/999", headers=headers(keys["enroll"])), 404, "not_found"
        )
        assert_error(client.get("/identities/abc", headers=headers(keys["enroll"])), 422)
        body = identify(client, keys["identify"], seed=1).json()
        assert body["matches"][0]["identity"] == "ann-marie"


def test_delete_identity_is_erasure(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()
        enroll(client, keys["enroll"], "ann", seed=2)
        enroll(client, keys["enroll"], "ben", seed=3)
        url = f"/identities/{ann['identity_id']}"
        assert_error(client.delete(url, headers=headers(keys["enroll"])), 403)  # admin only
        r = client.delete(url, headers=headers(keys["admin"]))
        assert r.status_code == 204 and r.content == b""
        assert_error(client.get(url, headers=headers(keys["enroll"])), 404)
        assert_error(client.delete(url, headers=headers(keys["admin"])), 404)
        for seed in (1, 2):
            names = [
                m["identity"]
                for m in identify(client, keys["identify"], seed=seed).json()["matches"]
            ]
            assert names == ["ben"]
        check = client.get("/admin/index/check", headers=headers(keys["admin"])).json()
        assert check["consistent"] and check["db_templates"] == check["index_templates"] == 1
        ready = client.get("/readyz").json()
        assert ready["templates"] == ready["index_templates"] == 1
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        assert session.scalars(select(Identity).where(Identity.name == "ann")).all() == []
        assert len(session.scalars(select(Template)).all()) == 1
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "identity.delete")).one()
        assert audit.identity_id == ann["identity_id"] and audit.detail == {"templates": 2}
    db.dispose()


def test_delete_template(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        first = enroll(client, keys["enroll"], "ann", seed=1).json()
        second = enroll(client, keys["enroll"], "ann", seed=2).json()
        r = client.delete(f"/templates/{first['template_id']}", headers=headers(keys["admin"]))
        assert r.status_code == 204
        assert_error(
            client.delete(f"/templates/{first['template_id']}", headers=headers(keys["admin"])), 404
        )
        body = identify(client, keys["identify"], seed=1).json()
        assert [m["template_id"] for m in body["matches"]] == [second["template_id"]]
        detail = client.get(
            f"/identities/{first['identity_id']}", headers=headers(keys["enroll"])
        ).json()
        assert [t["id"] for t in detail["template_list"]] == [second["template_id"]]
        # the same content can be enrolled again after erasure: a new template
        again = enroll(client, keys["enroll"], "ann", seed=1)
        assert again.status_code == 201 and again.json()["template_id"] != first["template_id"]
        assert_error(client.delete("/templates/0", headers=headers(keys["admin"])), 422)


def test_no_parameterless_delete(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        enroll(client, keys["enroll"], "ann", seed=1)
        for url in ("/identities", "/templates", "/galleries"):
            assert client.delete(url, headers=headers(keys["admin"])).status_code in (404, 405)
        assert len(client.get("/identities", headers=headers(keys["enroll"])).json()["items"]) == 1


def test_galleries(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        enroll(client, keys["enroll"], "ann", seed=1, gallery="lobby")
        enroll(client, keys["enroll"], "ben", seed=2, gallery="lobby")
        enroll(client, keys["enroll"], "cid", seed=3)
        listed = client.get("/galleries", headers=headers(keys["enroll"])).json()
        assert [(g["name"], g["identities"], g["templates"]) for g in listed] == [
            ("default", 1, 1),
            ("lobby", 2, 2),
        ]
        assert_error(
            client.patch(
                "/galleries/lobby", headers=headers(keys["enroll"]), json={"default_threshold": 0.5}
            ),
            403,
        )
        assert_error(
            client.patch(
                "/galleries/nope", headers=headers(keys["admin"]), json={"default_threshold": 0.5}
            ),
            404,
        )
        assert_error(
            client.patch(
                "/galleries/lobby", headers=headers(keys["admin"]), json={"default_threshold": 2}
            ),
            422,
        )
        unchanged = client.patch("/galleries/lobby", headers=headers(keys["admin"]), json={})
        assert unchanged.status_code == 200 and unchanged.json()["identities"] == 2  # a no-op


def test_erased_ids_are_never_issued_again(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 14, item 3: alice erased, mallory enrolled elsewhere, mallory gets new ids."""
    with running(settings, embedder) as client:
        alice = enroll(client, keys["enroll"], "alice", seed=1).json()
        gone = client.delete(f"/identities/{alice['identity_id']}", headers=headers(keys["admin"]))
        assert gone.status_code == 204
        mallory = enroll(client, keys["enroll"], "mallory", seed=2, gallery="other").json()
        assert mallory["identity_id"] > alice["identity_id"]
        assert mallory["template_id"] > alice["template_id"]


def test_an_erased_name_is_gone_from_the_sqlite_files(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 14, item 8: after the 204, neither the database nor its WAL holds the name."""
    from pathlib import Path

    url = settings.resolved_database_url
    if not url.startswith("sqlite"):
        return  # PostgreSQL: no WAL file of ours to read
    path = Path(url.removeprefix("sqlite:///"))
    secret = "erasable-name-7c1e"
    with running(settings, embedder) as client:
        person = enroll(client, keys["enroll"], secret, seed=1).json()
        files = [path, path.with_name(path.name + "-wal")]
        assert any(secret.encode() in f.read_bytes() for f in files if f.exists())
        gone = client.delete(f"/identities/{person['identity_id']}", headers=headers(keys["admin"]))
        assert gone.status_code == 204
        for f in files:
            if f.exists():
                assert secret.encode() not in f.read_bytes(), f.name
