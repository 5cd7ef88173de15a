"""``gaitid serve``, ``gaitid db``, ``gaitid keys`` and ``gaitid index``.

Imports of FastAPI, uvicorn, SQLAlchemy and the engine happen inside the commands, so
``gaitid --help`` stays fast and nothing here ever imports torch. Every command reads the same
``GAITID_*`` settings as the server, so ``gaitid keys create`` writes to the database the
server reads.

Output contract used by scripts: ``gaitid keys create`` prints the new key as its last line.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer

from gaitid.errors import EXIT_BAD_INPUT

logger = logging.getLogger(__name__)

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)
index_app = typer.Typer(
    help="The running server's in-memory index (rebuild from SQL, consistency check).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the service commands to the root ``gaitid`` CLI."""
    app.command("serve")(serve)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
    app.add_typer(index_app, name="index")


def _settings() -> Any:
    from pydantic import ValidationError

    from gaitid.service.config import load_settings

    try:
        return load_settings()
    except ValidationError as exc:
        typer.echo(f"invalid GAITID_* settings:\n{exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _database(settings: Any) -> Any:
    from gaitid.service.db.engine import Database

    return Database(settings.resolved_database_url, pool_size=settings.database_pool_size)


def _warn_unknown_env() -> None:
    """A misspelt ``GAITID_*`` variable would otherwise be silently ignored."""
    from gaitid.service.config import Settings

    known = {f"GAITID_{name.upper()}" for name in Settings.model_fields}
    known |= {"GAITID_API_KEY", "GAITID_URL"}  # read by `gaitid index`
    for name in sorted(os.environ):
        if name.startswith("GAITID_") and name not in known:
            typer.echo(f"warning: unknown setting {name} is ignored", err=True)


# ------------------------------------------------------------------------------------ serve
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (GAITID_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (GAITID_PORT).")] = None,
    init: Annotated[
        bool, typer.Option("--init", help="Run `gaitid db upgrade` first (laptop one-liner).")
    ] = False,
) -> None:
    """Run the service with uvicorn on the configured database, model and index."""
    import uvicorn

    from gaitid.service.app import create_app
    from gaitid.service.db.schema import require_migrated, upgrade
    from gaitid.service.errors import DatabaseNotMigratedError

    _warn_unknown_env()
    settings = _settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    db = _database(settings)
    try:
        if init:
            upgrade(db.engine)
        require_migrated(db.engine, db.url_for_display)
    except DatabaseNotMigratedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    model_path = settings.resolved_model_path
    if not model_path.is_file():
        typer.echo(
            f"error: no model file at {model_path}; set GAITID_MODEL_PATH to an ONNX file of the "
            "gaitid contract (e.g. `gaitid export --random-init lite --out model.onnx`)",
            err=True,
        )
        raise typer.Exit(1)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )


# --------------------------------------------------------------------------------------- db
@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema of GAITID_DATABASE_URL."""
    from gaitid.service.db.schema import upgrade

    settings = _settings()
    db = _database(settings)
    try:
        new = upgrade(db.engine, revision)
        typer.echo(f"{db.url_for_display} is at revision {new}")
    finally:
        db.dispose()


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and the code's newest; exit 1 when behind."""
    from gaitid.service.db.schema import schema_status

    settings = _settings()
    db = _database(settings)
    try:
        status = schema_status(db.engine)
    finally:
        db.dispose()
    typer.echo(f"database: {status.current or 'none'} (code head: {status.head})")
    if not status.up_to_date:
        typer.echo("run `gaitid db upgrade`", err=True)
        raise typer.Exit(1)


def _require_migrated_db(settings: Any) -> Any:
    from gaitid.service.db.schema import require_migrated
    from gaitid.service.errors import DatabaseNotMigratedError

    db = _database(settings)
    try:
        require_migrated(db.engine, db.url_for_display)
    except DatabaseNotMigratedError as exc:
        db.dispose()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    return db


# ------------------------------------------------------------------------------------- keys
@keys_app.command("create")
def keys_create(
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="identify, enroll or admin (repeatable).")
    ],
    name: Annotated[
        str, typer.Option("--name", "-n", help="Who or what uses this key.")
    ] = "default",
    gallery: Annotated[
        list[str] | None,
        typer.Option(
            "--gallery",
            "-g",
            help="Bind the key to this gallery (repeatable); none: every gallery.",
        ),
    ] = None,
) -> None:
    """Create an API key; the key itself is printed once, as the last line."""
    from gaitid.service.auth import create_key, parse_galleries, parse_scopes
    from gaitid.service.errors import InvalidRequestError

    try:
        scopes = parse_scopes(scope)
        galleries = parse_galleries(gallery)
    except InvalidRequestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    db = _require_migrated_db(_settings())
    try:
        with db.session(write=True) as session:
            created = create_key(session, scopes, name, galleries)
    except InvalidRequestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        db.dispose()
    where = (
        "every gallery"
        if created.galleries is None
        else "the galleries " + ", ".join(sorted(created.galleries))
    )
    typer.echo(
        f"created key {created.id} ({created.prefix}) named {created.name!r} with scopes "
        f"{', '.join(sorted(created.scopes))} for {where}; store it now, it is not shown again:"
    )
    typer.echo(created.key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (id, prefix, name, scopes, last use, revoked); never the keys."""
    from gaitid.service.auth import list_keys

    db = _require_migrated_db(_settings())
    try:
        with db.session() as session:
            listing = [(r, r.galleries) for r in list_keys(session)]
    finally:
        db.dispose()
    head = f"{'id':>4}  {'prefix':8}  {'scopes':24}  {'last used':25}  {'revoked':25}"
    typer.echo(f"{head}  {'galleries':24}  name")
    for r, bound in listing:
        last = r.last_used_at.isoformat(timespec="seconds") if r.last_used_at else "-"
        revoked = r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "-"
        where = "*" if bound is None else ",".join(sorted(bound))
        typer.echo(
            f"{r.id:>4}  {r.prefix:8}  {r.scopes:24}  {last:25}  {revoked:25}  {where:24}  {r.name}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix (from `gaitid keys list`).")],
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from gaitid.service.auth import revoke_key
    from gaitid.service.errors import InvalidRequestError, NotFoundError

    db = _require_migrated_db(_settings())
    try:
        with db.session(write=True) as session:
            row = revoke_key(session, key)
            typer.echo(f"revoked key {row.id} ({row.prefix})")
    except (NotFoundError, InvalidRequestError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


# ------------------------------------------------------------------------------------ index
UrlOption = Annotated[
    str | None,
    typer.Option(help="Server base URL (GAITID_URL; default http://GAITID_HOST:GAITID_PORT)."),
]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", help="An admin key (GAITID_API_KEY).", show_default=False)
]


def _call_server(method: str, path: str, url: str | None, api_key: str | None) -> dict[str, Any]:
    settings = _settings()
    base = url or os.environ.get("GAITID_URL") or f"http://{settings.host}:{settings.port}"
    key = api_key or os.environ.get("GAITID_API_KEY")
    if not key:
        typer.echo("error: pass --api-key or set GAITID_API_KEY (an admin key)", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    request = urllib.request.Request(
        base.rstrip("/") + path, method=method, headers={"X-API-Key": key}
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        typer.echo(f"error: {exc.code} from {base}{path}: {body}", err=True)
        raise typer.Exit(1) from None
    except urllib.error.URLError as exc:
        typer.echo(f"error: cannot reach the server at {base}: {exc.reason}", err=True)
        raise typer.Exit(1) from None


@index_app.command("rebuild")
def index_rebuild(url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Ask the running server to rebuild its index from SQL."""
    result = _call_server("POST", "/admin/index/rebuild", url, api_key)
    typer.echo(
        f"rebuilt: {result['templates']} templates in {result['galleries']} galleries "
        f"({result['seconds']:.2f} s)"
    )


@index_app.command("check")
def index_check(url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Compare the running server's index with SQL; exit 1 when they differ."""
    result = _call_server("GET", "/admin/index/check", url, api_key)
    typer.echo(json.dumps(result, indent=2))
    if not result["consistent"]:
        typer.echo("index and SQL differ: run `gaitid index rebuild`", err=True)
        raise typer.Exit(1)
