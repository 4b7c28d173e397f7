"""Each installable distribution declares every package it imports, and installs and runs on
its own in an empty venv: ``core`` (phi-exchange-core), ``transfer`` (partner-transfer, what a
partner installs: ``pip install ./core ./transfer``) and the operator tooling (``.``).

uv builds and installs; from its cache when it can (offline), else from the package index.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.packaging

# Distribution -> (its pyproject directory, the source folders of its packages).
DISTRIBUTIONS = {
    "phi-exchange-core": (REPO / "core", [REPO / "core" / "python" / "phi_core"]),
    "partner-transfer": (REPO / "transfer", [REPO / "transfer" / "src" / "partner_transfer"]),
    "phi-exchange": (REPO, [REPO / "stacks", REPO / "admin", REPO / "importer"]),
}
# Import name -> distribution name, where they differ.
PROVIDED_BY = {"phi_core": "phi-exchange-core", "partner_transfer": "partner-transfer",
               "aws_cdk": "aws-cdk-lib", "cdk_nag": "cdk-nag", "markdown_it": "markdown-it-py",
               "iam_rolesanywhere_session": "iam-rolesanywhere-session"}
OWN = {"phi-exchange-core": {"phi_core"}, "partner-transfer": {"partner_transfer"},
       "phi-exchange": {"stacks", "admin", "importer"}}


def imported(sources: list[Path], own: set[str]) -> set[str]:
    """Distributions the code imports (not its ``own`` packages, not the standard library)."""
    names: set[str] = set()
    for folder in sources:
        for source in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return {PROVIDED_BY.get(n, n) for n in names - own if n not in sys.stdlib_module_names}


def declared(project_dir: Path) -> set[str]:
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]
    return {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower()
            for d in project.get("dependencies", [])}


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_every_imported_package_is_declared(distribution: str) -> None:
    project_dir, sources = DISTRIBUTIONS[distribution]
    needed = imported(sources, OWN[distribution])
    assert needed <= declared(project_dir), needed - declared(project_dir)


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        pytest.fail("uv is not installed: make setup installs it (requirements-bootstrap.txt)")
    return found


def run(*argv: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                          timeout=600, env=env)


def copy(source: Path, destination: Path) -> Path:
    """A copy of a distribution's folder: the build must not write into the checkout."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".venv*", "node_modules", "cdk.out", "tests",
        "docs", "bench", ".git", ".localrun", "transfer", "core", "lambdas", "localaws",
        "localrun", "security") if source == REPO else shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    return destination


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributions")
    return {"core": copy(REPO / "core", root / "core"),
            "transfer": copy(REPO / "transfer", root / "transfer"),
            "operator": copy(REPO, root / "operator")}


@pytest.mark.parametrize(("installs", "command"), [
    (["core"], ["python", "-c", "import phi_core.partner_policy, phi_core.outputs"]),
    (["core", "transfer"], ["partner-transfer", "--help"]),
    (["core", "transfer", "operator"], ["phi-exchange-admin", "--help"]),
], ids=["core", "transfer", "operator"])
def test_each_distribution_installs_into_an_empty_venv_and_runs(
        installs: list[str], command: list[str], sources: dict[str, Path],
        tmp_path: Path) -> None:
    venv = install_into_new_venv(tmp_path / "venv", [sources[n] for n in installs])
    python = venv / "bin" / "python"
    program = python if command[0] == "python" else venv / "bin" / command[0]
    ran = run(program, *command[1:], env=CLEAN)
    assert ran.returncode == 0, ran.stderr
    where = run(python, "-c", "import phi_core; print(phi_core.__file__)", env=CLEAN)
    assert str(venv) in where.stdout  # the installed copy answered, not the checkout


def test_installed_operator_tooling_writes_the_sample_kit(sources: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """The kit's templates are package data: an installed onboard writes the committed
    sample kit byte for byte (docs/sample-kit/README.md's command)."""
    venv = install_into_new_venv(tmp_path / "venv", [sources[n] for n in
                                                     ("core", "transfer", "operator")])
    sample = REPO / "docs" / "sample-kit"
    ran = run(venv / "bin" / "phi-exchange-admin", "--registry", REPO / "customers", "onboard",
              "acme", "--outputs-file", sample / "outputs.json", "--output", tmp_path / "kit",
              "--access-key-id", "AKIAIOSFODNN7EXAMPLE", "--receipt-public-key",
              sample / "receipt-public-key.pem", "--support-contact",
              "PHI exchange operations, phi-ops@example.org, +44 20 7946 0000", env=CLEAN)
    assert ran.returncode == 0, ran.stderr
    written = {p.name: p.read_bytes() for p in (tmp_path / "kit").iterdir()}
    assert written == {p.name: p.read_bytes() for p in (sample / "acme").iterdir()}


CLEAN = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}


def install_into_new_venv(venv: Path, distributions: list[Path]) -> Path:
    made = run(uv(), "venv", "--python", sys.executable, venv, env=CLEAN)
    assert made.returncode == 0, made.stderr
    install = [uv(), "pip", "install", "--python", venv / "bin" / "python", *distributions]
    done = run(*install, "--offline", env=CLEAN)
    if done.returncode != 0:
        done = run(*install, env=CLEAN)  # not all in uv's cache: fetch from the index
    assert done.returncode == 0, done.stderr
    return venv
