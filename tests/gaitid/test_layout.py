"""One installed package: the product folders are imported, and shipped, as ``gaitid.<folder>``.

The folders stay at the top of the repository (the product's layout) and are linked under
``gaitid/``. A stray ``import service...`` would work in a checkout (the repository root is on
``sys.path`` there) but not in an installed wheel, and would load a second copy of the module
under another name; this test catches it before a user does.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_FOLDERS = ("model", "training", "service", "migrations")
#: Where Python code of ours lives (the links under gaitid/ are the same files again).
PIP_WHEEL = ("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q")
CODE_FOLDERS = ("gaitid", *PRODUCT_FOLDERS, "tests", "bench", "requirements")


def _python_files() -> list[Path]:
    files = []
    for folder in CODE_FOLDERS:
        files.extend(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)
    return [p for p in files if p.relative_to(ROOT).parts[:2] not in _links()]


def _links() -> set[tuple[str, str]]:
    return {("gaitid", name) for name in PRODUCT_FOLDERS}


#: An import inside a string of code (``python -c "import service"``, a patch target): the
#: statement and every name it imports (``import a, b as c`` imports ``a`` and ``b``).
CODE_IN_STRING = re.compile(
    r"^\s*(import|from)\s+([A-Za-z_][\w.]*(?:\s+as\s+\w+)?(?:\s*,\s*[A-Za-z_][\w.]*(?:\s+as\s+\w+)?)*)",
    re.MULTILINE,
)


def _imports_in_code(code: str) -> list[str]:
    """Modules the import statements in a string of code name (``from a import b``: ``a``)."""
    names = []
    for statement in code.split(";"):
        for keyword, imported in CODE_IN_STRING.findall(statement):
            modules = [part.split()[0] for part in imported.split(",")]
            names.extend(modules[:1] if keyword == "from" else modules)
    return names


def _top_level_imports(path: Path) -> list[str]:
    """Modules ``path`` imports, in statements and in strings of code it runs elsewhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.extend(_imports_in_code(node.value))
    return names


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import sys, shop.cli", ["sys", "shop.cli"]),
        ("import os; import numpy as np, shop.app as app", ["os", "numpy", "shop.app"]),
        ("from shop.config import load_config", ["shop.config"]),
        ("x = 1\n  import gaitid.decode", ["gaitid.decode"]),
    ],
)
def test_every_name_of_an_import_in_a_string_is_seen(code: str, expected: list[str]) -> None:
    assert _imports_in_code(code) == expected


@pytest.mark.parametrize("folder", PRODUCT_FOLDERS)
def test_each_product_folder_is_linked_under_the_package(folder: str) -> None:
    link = ROOT / "gaitid" / folder
    assert link.is_symlink(), f"gaitid/{folder} must be a link to ../{folder}"
    assert link.resolve() == (ROOT / folder).resolve()
    assert (link / "__init__.py").is_file()


def test_no_code_imports_a_product_folder_by_its_bare_name() -> None:
    strays = []
    for path in _python_files():
        for name in _top_level_imports(path):
            if name.split(".")[0] in PRODUCT_FOLDERS:
                strays.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not strays, "import these as gaitid.<folder>...:\n" + "\n".join(strays)


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """``pip wheel .``: everything lands under ``gaitid/``, the links' targets included.

    Built from a copy (links kept as links), so setuptools' ``build/`` stays out of the tree.
    """
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("gaitid", *PRODUCT_FOLDERS):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, *PIP_WHEEL, "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("gaitid-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"gaitid"}
    for must in (
        "gaitid/service/app.py",
        "gaitid/model/export.py",
        "gaitid/training/cli.py",
        "gaitid/migrations/alembic.ini",
        "gaitid/migrations/env.py",
        "gaitid/service/console/index.html",
        "gaitid/service/console/console.js",
        "gaitid/service/console/console.css",
        "gaitid/service/console/favicon.svg",
    ):
        assert must in names, must
    assert any(n.startswith("gaitid/migrations/versions/") and n.endswith(".py") for n in names)
