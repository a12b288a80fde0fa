"""The import-time warning when the SDK files Python imports are not the patched ones.

A copy of the rendered tree stands in for site-packages; overwriting one rendered file with
upstream-like bytes is what pip does when upstream ``mistralai`` is installed over ours
(tests/test_recipes.py does it for real with pip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import mistralai
from mistralai_patched import build_info
from mistralai_patched.integrity import SILENCE_ENV, rendered_not_ours

pytestmark = pytest.mark.packaging
SRC = Path(mistralai.__file__).resolve().parent.parent
IMPORTS = (
    "import mistralai.client, mistralai.client.chat, mistralai.azure.client, mistralai.client.utils.retries\n"
    "from mistralai import Mistral\n"
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    for name in ("mistralai", "mistralai_patched"):
        shutil.copytree(SRC / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _import(site: Path, extra_env: Optional[Dict[str, str]] = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != SILENCE_ENV}
    env.update(PYTHONPATH=str(site), **(extra_env or {}))
    done = subprocess.run([sys.executable, "-c", IMPORTS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_intact_tree_imports_without_warning(site: Path) -> None:
    assert rendered_not_ours(build_info()["rendered"], [str(site / "mistralai")]) == []
    assert "ClobberedWarning" not in _import(site)


def test_overwritten_file_warns_once_per_process(site: Path) -> None:
    target = site / "mistralai" / "client" / "utils" / "retries.py"
    target.write_text(target.read_text() + "# other bytes\n")
    assert rendered_not_ours(build_info()["rendered"], [str(site / "mistralai")]) == ["mistralai/client/utils/retries.py"]
    stderr = _import(site)
    assert stderr.count("ClobberedWarning") == 1, stderr
    assert "mistralai/client/utils/retries.py" in stderr and "mistralai-patched check" in stderr
    assert SILENCE_ENV in stderr
    assert "ClobberedWarning" not in _import(site, {SILENCE_ENV: "1"})


def test_missing_file_warns(site: Path) -> None:
    (site / "mistralai" / "gcp" / "client" / "basesdk.py").unlink()
    assert rendered_not_ours(build_info()["rendered"], [str(site / "mistralai")]) == ["mistralai/gcp/client/basesdk.py"]
