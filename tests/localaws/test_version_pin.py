"""localaws patches moto internals, so it loads only with the moto version it was written for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import moto
import pytest

import localaws

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_pinned_version_is_the_installed_one() -> None:
    assert moto.__version__ == localaws.MOTO_VERSION
    localaws.check_moto_version()  # does not raise


@pytest.mark.parametrize("found", ["5.2.6", "5.3.0", "4.2.14", "5.2.5.dev0"])
def test_any_other_moto_version_is_refused_with_what_to_do(found: str) -> None:
    with pytest.raises(localaws.IncompatibleMotoError) as refused:
        localaws.check_moto_version(found)
    message = str(refused.value)
    assert localaws.MOTO_VERSION in message
    assert "tests/localaws" in message  # says how to port it


def test_importing_localaws_with_another_moto_fails_at_import() -> None:
    code = "import moto; moto.__version__ = '5.3.0'; import localaws"
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode != 0
    assert "IncompatibleMotoError" in completed.stderr
    assert "moto 5.3.0 is installed" in completed.stderr
