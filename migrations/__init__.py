"""Alembic migrations of the service database, shipped inside the wheel.

Everything is located from this file, never from the working directory: ``alembic.ini`` sits
beside it and the script location is this package's folder. ``gaitid.service.db.schema`` drives them
(``gaitid db upgrade``); the plain ``alembic -c migrations/alembic.ini`` command works too.
"""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = MIGRATIONS_DIR / "alembic.ini"
