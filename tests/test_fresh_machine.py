"""A new machine builds it: the real PEP 517 isolated build, in a subprocess, on a clean copy of the
project, with ``MISTRALAI_PATCHED_CACHE`` pointing at an empty directory, under pip and under uv.

Inside build isolation only ``[build-system].requires`` is importable; the build hook downloads
the pinned upstream sdist with ``python -m pip download`` there, so these tests are what proves
the download path (an in-process test has pip importable whatever pyproject.toml says).

The unreachable-index cases send only *our* download to a dead address: the frontend gets the
real index on its command line (which overrides the environment for it and for the build
requirements it installs), while the environment the build hook inherits names 127.0.0.1:9, as
``PIP_INDEX_URL`` under pip and as ``UV_DEFAULT_INDEX`` under uv (which the hook carries over to
pip). The message must name the command, pip's own error output and the remedy.

Network: the package index (marker ``build``; ``.ci/run`` runs them on one Python).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import regen  # noqa: E402

pytestmark = [pytest.mark.packaging, pytest.mark.build]

DEAD_INDEX = "http://127.0.0.1:9/simple"
# Build output, environments and caches: what a clean clone does not have.
NOT_IN_A_CLONE = shutil.ignore_patterns(".git", ".venv*", "venv", ".ci-work", "dist", "build", "*.egg-info",
                                        "__pycache__", ".pytest_cache", "_build_info.json", "*.tmp", ".regen-*")


def clean_copy(dest: Path) -> Path:
    """The project as a fresh clone has it: no ``src/mistralai/``, no build record."""
    shutil.copytree(ROOT, dest, ignore=NOT_IN_A_CLONE)
    shutil.rmtree(dest / "src" / "mistralai", ignore_errors=True)
    shutil.rmtree(dest / "src" / "mistralai.old", ignore_errors=True)
    return dest


def configured_index() -> str:
    """The index the frontend itself should use: the user's (``PIP_INDEX_URL`` or pip's
    configuration), else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].split()[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "https://pypi.org/simple"


def uv_binary() -> str:
    uv = pytest.importorskip("uv", reason="uv is a test requirement (tests/requirements.txt)")
    return uv.find_uv_bin()


def build(frontend: str, project: Path, out: Path, env: Dict[str, str], index: str = "") -> subprocess.CompletedProcess:
    """Build a wheel of ``project`` with ``frontend`` ("pip" or "uv"), isolated, as a user does."""
    cmd: List[str]
    if frontend == "pip":
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(out)]
        cmd += ["--index-url", index] if index else []
    else:
        cmd = [uv_binary(), "build", "--wheel", "--python", sys.executable, "--out-dir", str(out)]
        cmd += ["--default-index", index] if index else []
        env = dict(env, UV_PYTHON_DOWNLOADS="never")
    return subprocess.run(cmd + [str(project)], capture_output=True, text=True, env=env, timeout=900,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("frontend", ["pip", "uv"])
def test_isolated_build_with_an_empty_cache(tmp_path: Path, frontend: str) -> None:
    project = clean_copy(tmp_path / "clone")
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    proc = build(frontend, project, tmp_path / "out", dict(os.environ, MISTRALAI_PATCHED_CACHE=str(cache)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = regen.select_line()
    assert [p.name for p in (tmp_path / "out").glob("*.whl")] == \
        [f"mistralai_patched-{config.version}-py3-none-any.whl"]
    sdist = cache / "sdists" / f"{config.upstream_name}-{config.upstream_version}.tar.gz"
    assert regen._sha256_file(sdist) == config.sdist_sha256, "the downloaded sdist is cached once verified"


@pytest.mark.parametrize("frontend", ["pip", "uv"])
def test_unreachable_index_is_reported_truly(tmp_path: Path, frontend: str) -> None:
    project = clean_copy(tmp_path / "clone")
    env = dict(os.environ, MISTRALAI_PATCHED_CACHE=str(tmp_path / "empty-cache"), PIP_CONFIG_FILE=os.devnull,
               PIP_EXTRA_INDEX_URL="", PIP_FIND_LINKS="", PIP_RETRIES="0", PIP_TIMEOUT="3")
    if frontend == "pip":
        env["PIP_INDEX_URL"] = DEAD_INDEX
    else:  # uv's setting, carried over to the hook's pip download
        env.pop("PIP_INDEX_URL", None)
        env.update(UV_DEFAULT_INDEX=DEAD_INDEX, UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    proc = build(frontend, project, tmp_path / "out", env, index=configured_index())
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0, said[-3000:]
    config = regen.select_line()
    assert f"pip could not download the upstream sdist {config.upstream_name}=={config.upstream_version}" in said
    assert "command: " in said and " -m pip download --no-deps --no-binary :all:" in said
    assert "pip said:" in said and "127.0.0.1" in said, "pip's own error output names the index it tried"
    assert "What to do:" in said and "PIP_INDEX_URL" in said and config.sdist_sha256 in said
    assert not (project / "src" / "mistralai").exists() and not list((tmp_path / "clone" / "src").glob(".regen-*"))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.whl"))


def test_uv_index_settings_are_carried_over_to_pip() -> None:
    env = regen.pip_environment({
        "UV_DEFAULT_INDEX": "https://mirror.example/simple",
        "UV_INDEX": "internal=https://internal.example/simple https://other.example/simple",
        "UV_EXTRA_INDEX_URL": "https://extra.example/simple",
        "UV_FIND_LINKS": "/wheels,/more-wheels",
        "UV_INSECURE_HOST": "internal.example",
    })
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == \
        "https://internal.example/simple https://other.example/simple https://extra.example/simple"
    assert env["PIP_FIND_LINKS"] == "/wheels /more-wheels"
    assert env["PIP_TRUSTED_HOST"] == "internal.example"


def test_pips_own_settings_win_over_uvs() -> None:
    env = regen.pip_environment({"PIP_INDEX_URL": "https://pip.example/simple", "UV_DEFAULT_INDEX": "https://uv.example/simple",
                                 "UV_INDEX_URL": "https://older-uv.example/simple"})
    assert env["PIP_INDEX_URL"] == "https://pip.example/simple"
    assert regen.pip_environment({"UV_INDEX_URL": "https://older-uv.example/simple"})["PIP_INDEX_URL"] == \
        "https://older-uv.example/simple"
    assert "PIP_INDEX_URL" not in regen.pip_environment({})


def test_missing_pip_is_named_with_the_remedy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pip" else real(name, *a))
    monkeypatch.setenv("MISTRALAI_PATCHED_CACHE", str(tmp_path / "empty-cache"))
    config = regen.select_line()
    with pytest.raises(regen.RegenError, match=r"pip is not importable .* build requirement") as info:
        regen.fetch_sdist(config.upstream_name, config.upstream_version, config.sdist_sha256)
    assert "Nothing was written" in str(info.value) and not (tmp_path / "empty-cache").exists()
