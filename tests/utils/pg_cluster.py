"""A throwaway PostgreSQL server of our own (initdb + pg_ctl on a free port), to stop and start.

The shared server at 127.0.0.1:5432 must never be stopped by a test; an outage test needs a
server it owns. :func:`pg_cluster` makes one in a temporary directory with the machine's
binaries (``initdb`` and ``pg_ctl`` on ``PATH`` or under ``/usr/lib/postgresql/*/bin``),
trust authentication on 127.0.0.1 only, and removes it afterwards. PostgreSQL refuses to run
as root, so as root it runs as the ``postgres`` system user (``runuser``), in a directory that
user owns. :func:`unavailable_reason` says why it cannot, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.utils.live_server import free_port

#: The system user a root process runs PostgreSQL as.
PG_SYSTEM_USER = "postgres"


def pg_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian layout first)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def unavailable_reason() -> str | None:
    """Why no cluster can be made here (None: it can)."""
    if pg_bin_dir() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or /usr/lib/postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            return f"running as root and there is no {PG_SYSTEM_USER!r} user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (PostgreSQL refuses root)"
    return None


@dataclass
class PgCluster:
    """A running (or stopped) private PostgreSQL server."""

    bin_dir: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of its ``postgres`` database, as superuser ``postgres``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` disconnects every session (an operator's stop)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """Create, start, and finally stop and delete a private cluster (see the module doc)."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = pg_bin_dir()
    assert bin_dir is not None
    as_user = PG_SYSTEM_USER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="gaitid-pg-"))
    if as_user is not None:
        entry = pwd.getpwnam(as_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = PgCluster(bin_dir, root, free_port(), as_user)
    try:
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(RuntimeError):  # already stopped
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
