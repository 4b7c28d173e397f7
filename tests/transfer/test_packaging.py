"""The partner's install: ``./transfer`` alone, in an empty venv, gives a working command.

Proves transfer/pyproject.toml declares every package the client imports (nothing is borrowed
from the development venv). uv builds and installs it; from uv's cache when it can (offline),
else from the package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.packaging


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        pytest.skip("uv is not installed (requirements-dev.txt's setup installs it)")
    return found


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=300, env=env
    )


def test_transfer_installs_alone_and_runs(tmp_path: Path) -> None:
    venv = tmp_path / "partner-venv"
    clean = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    made = run(uv(), "venv", "--python", sys.executable, venv, env=clean)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    source = tmp_path / "transfer"  # a copy: the build must not write into the checkout
    shutil.copytree(REPO / "transfer", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = [uv(), "pip", "install", "--python", python, source]
    done = run(*install, "--offline", env=clean)
    if done.returncode != 0:
        done = run(*install, env=clean)  # not all in uv's cache: fetch from the index
    assert done.returncode == 0, done.stderr
    helped = run(venv / "bin" / "partner-transfer", "--help", env=clean)
    assert helped.returncode == 0, helped.stderr
    assert "upload" in helped.stdout and "download" in helped.stdout
    # The installed code, not the checkout's, answered.
    where = run(python, "-c", "import partner_transfer; print(partner_transfer.__file__)")
    assert str(venv) in where.stdout


def imported_distributions() -> set[str]:
    """Top-level modules the client imports that are not its own or the standard library."""
    import ast

    names: set[str] = set()
    for source in (REPO / "transfer" / "src" / "partner_transfer").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "partner_transfer"}


def test_every_imported_package_is_declared() -> None:
    import re
    import tomllib

    project = tomllib.loads((REPO / "transfer" / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert imported_distributions() <= declared, imported_distributions() - declared
