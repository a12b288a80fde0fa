"""The README's install recipes, each in a fresh venv, with real dependents from the package index.

Recipe A: pip with the drop-in wheel (distribution ``mistralai``) on ``--find-links``.
Recipe B: uv, a project depending on mistralai-patched, with an override that drops ``mistralai``;
or uv with the drop-in wheel on ``find-links`` and a constraint.
Recipe C: plain pip with both distributions installed: what breaks, what ``check`` and the import
warning say, and that following ``check``'s fix ends in recipe A's state.

Real dependents: mistralai-evaluations (requires ``mistralai>=2.7.1,<3``, subclasses
``mistralai.client.Mistral``), openinference-instrumentation-mistralai[instruments] (requires
``mistralai>=2.0.0``, which alone would pick upstream 3.x), and the namespace neighbour
mistralai-agents (a pre-release; installed with ``--no-deps``, its SDK needs Temporal and more).
Each recipe ends with: one copy of ``mistralai/`` and it is ours, ``check`` exit 0, ``selftest``
clean on every target, the dependents import beside ``from mistralai import Mistral``.

Needs the built wheels (``MISTRALAI_PATCHED_WHEEL``, ``MISTRALAI_DROP_IN_WHEEL``; .ci/run sets
them) and a Python >= 3.12 (the neighbours require it): ``MISTRALAI_RECIPES_PYTHON``, else the
newest pyenv 3.12/3.13. Skipped without the wheels; fails, rather than skips, when the wheels are
given but no such Python is found. Network: the package index (pip) and pypi.org (uv).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

pytestmark = pytest.mark.recipes

PATCHED_WHEEL = os.environ.get("MISTRALAI_PATCHED_WHEEL")
DROP_IN_WHEEL = os.environ.get("MISTRALAI_DROP_IN_WHEEL")
if not (PATCHED_WHEEL and DROP_IN_WHEEL):
    pytest.skip("recipes need MISTRALAI_PATCHED_WHEEL and MISTRALAI_DROP_IN_WHEEL (.ci/run sets them)",
                allow_module_level=True)

EVALUATIONS = "mistralai-evaluations==0.8.4"
INSTRUMENTATION = "openinference-instrumentation-mistralai[instruments]==2.2.2"
AGENTS = "mistralai-agents==1.1.0rc11"
UV = "uv==0.13.8"
SILENCE = "MISTRALAI_PATCHED_NO_CLOBBER_WARNING"


def _drop_in_version() -> str:
    return Path(DROP_IN_WHEEL or "").name.split("-")[1]


def _patched_version() -> str:
    return Path(PATCHED_WHEEL or "").name.split("-")[1]


def _python() -> str:
    explicit = os.environ.get("MISTRALAI_RECIPES_PYTHON")
    if explicit:
        return explicit
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() if shutil.which("pyenv") else ""
    for minor in ("3.13", "3.12"):
        found = sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}")) if root else []
        found = found or [p for p in [shutil.which(f"python{minor}")] if p]
        if found:
            return found[-1]
    pytest.fail("recipes need Python >= 3.12 (mistralai-agents/-evaluations require it); "
                "set MISTRALAI_RECIPES_PYTHON")


def run(cmd: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
        check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command; on an unexpected exit status, fail with its output."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", SILENCE)}
    full_env = dict(inherited, PIP_DISABLE_PIP_VERSION_CHECK="1", **(env or {}))
    done = subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


class Venv:
    """A fresh venv made by ``python -m venv`` (pip) or given (uv), with helpers."""

    def __init__(self, path: Path, python: Optional[str] = None) -> None:
        self.path = path
        if python:
            run([python, "-m", "venv", str(path)])
        self.python = str(path / "bin" / "python")

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        return run([self.python, "-m", "pip", "install", "-q", *args])

    def dists(self) -> Dict[str, str]:
        code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
        return json.loads(run([self.python, "-c", code]).stdout)

    def check(self) -> Dict[str, Any]:
        done = run([self.python, "-m", "mistralai_patched", "check", "--json"], check=False, cwd=self.path)
        report = json.loads(done.stdout)
        assert report["exit_code"] == done.returncode
        return report

    def selftest(self) -> None:
        done = run([self.python, "-m", "mistralai_patched", "selftest", "--target", "all", "--both", "--n", "30"],
                   check=False, cwd=self.path)
        assert done.returncode == 0, done.stdout + done.stderr

    def imports(self, code: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return run([self.python, "-c", code], env=env, cwd=self.path)


NEIGHBOURS = (
    "import warnings; warnings.simplefilter('error')\n"  # no clobber warning, nothing else either
    "import mistralai.agents, mistralai.evaluations, mistralai.client\n"
    "from mistralai import Mistral\n"
    "from mistralai.evaluations import Mistral as EvaluationsMistral\n"
    "assert issubclass(EvaluationsMistral, Mistral), EvaluationsMistral.__mro__\n"
    "import mistralai.client.basesdk as b, inspect\n"
    "assert 'mistralai_patched' in inspect.getsource(b), 'the basesdk Python imports is not the patched one'\n"
    "print('neighbours ok')\n"
)


def assert_ours_alone(venv: Venv, expect: Dict[str, str], pip_check: bool = True) -> Dict[str, Any]:
    """One copy of mistralai/, ours: the done-when of every recipe (and ``pip check`` clean)."""
    dists = venv.dists()
    for name, version in expect.items():
        assert dists.get(name) == version, (name, dists.get(name))
    report = venv.check()
    assert report["exit_code"] == 0, json.dumps(report, indent=1)[-3000:]
    owners = [d for d in report["distributions"] if not d["ours"]]
    assert all(d["kind"] == "namespace neighbour" and d["shared_with_ours"] == 0 for d in owners), owners
    assert len([d for d in report["distributions"] if d["ours"]]) == 1
    assert not report["shared_files"] and report["remedy"] is None
    assert all(f["state"] == "patched" for f in report["files"])
    if pip_check:
        assert unmet_requirements(venv) == [], "a dependent's requirement is not met"
    return report


def unmet_requirements(venv: Venv) -> List[str]:
    """``pip check`` lines, less those of mistralai-agents' own dependencies (installed with
    --no-deps on purpose); its ``mistralai`` requirement still counts."""
    lines = run([venv.python, "-m", "pip", "check"], check=False).stdout.strip().splitlines()
    return [line for line in lines if "No broken requirements" not in line and not (
        line.startswith("mistralai-agents ") and " mistralai," not in line and " mistralai " not in line
        and "requirement mistralai" not in line)]


def test_recipe_a_pip_with_the_drop_in_wheel(tmp_path: Path) -> None:
    links = tmp_path / "wheels"
    # 0. The drop-in wheel, made as the README says: by a throwaway install of mistralai-patched.
    maker = Venv(tmp_path / "make-drop-in", _python())
    maker.pip("--no-deps", PATCHED_WHEEL or "")
    run([str(maker.path / "bin" / "mistralai-patched"), "drop-in", "--out", str(links)])
    assert [p.name for p in links.iterdir()] == [Path(DROP_IN_WHEEL or "").name]
    drop_in = _drop_in_version()
    venv = Venv(tmp_path / "venv", _python())
    # 1. A package that requires mistralai>=2.7.1,<3 resolves to the drop-in by version order alone.
    venv.pip("--find-links", str(links), EVALUATIONS, "mistralai[gcp]")
    assert venv.dists()["mistralai"] == drop_in
    # 2. An open-ended requirement (>=2.0.0 would pick upstream 3.x) is held by the constraint.
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"mistralai=={drop_in}\n")
    venv.pip("--find-links", str(links), "-c", str(constraints), INSTRUMENTATION)
    # 3. The namespace neighbour, a pre-release, without its (Temporal) dependencies.
    venv.pip("--pre", "--no-deps", AGENTS)
    assert_ours_alone(venv, {"mistralai": drop_in})
    assert "mistralai-patched" not in venv.dists()
    venv.selftest()
    assert "neighbours ok" in venv.imports(NEIGHBOURS).stdout
    # Instrumentation decides whether to activate from the `mistralai` distribution's version.
    code = (
        "from openinference.instrumentation.mistralai import MistralAIInstrumentor as I\n"
        "from opentelemetry.instrumentation.dependencies import get_dependency_conflicts\n"
        "import importlib.metadata as m, mistralai.client as c, mistralai_patched as p\n"
        "assert get_dependency_conflicts(I().instrumentation_dependencies()) is None\n"
        f"assert m.version('mistralai') == p.__version__ == {drop_in!r}\n"
        "assert c.__version__ == m.version('mistralai').split('+')[0]\n"
        "assert f' {c.__version__} ' in c.sdkconfiguration.SDKConfiguration.user_agent\n"
        "print('versions ok')\n"
    )
    assert "versions ok" in venv.imports(code).stdout
    # Both variants at once: the same bytes, so the fix is active, but fragile (exit 3).
    venv.pip("--no-deps", PATCHED_WHEEL or "")
    report = venv.check()
    assert report["exit_code"] == 3 and report["patch_active"], json.dumps(report)[-2000:]
    assert sorted(report["conflicting"]) == sorted([f"mistralai {drop_in}", f"mistralai-patched {_patched_version()}"])
    assert "both variants" in report["remedy"]["problem"]


def uv_project(tmp_path: Path, dependencies: List[str], uv_table: str) -> Venv:
    """A uv project (pyproject.toml with ``dependencies`` and ``[tool.uv]`` lines), synced into a
    fresh ``.venv`` by uv, plus the namespace neighbour (a pre-release, without its dependencies)
    and pip for ``pip check``. The project directory holds the drop-in wheel under ``wheels/``."""
    tools = Venv(tmp_path / "tools", sys.executable)
    tools.pip(UV)
    uv = str(tmp_path / "tools" / "bin" / "uv")
    project = tmp_path / "app"
    (project / "wheels").mkdir(parents=True)
    shutil.copy(DROP_IN_WHEEL or "", project / "wheels")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.12"\n'
        f"dependencies = {json.dumps(dependencies)}\n\n[tool.uv]\npackage = false\n{uv_table}"
    )
    env = {"UV_PYTHON_DOWNLOADS": "never", "UV_LINK_MODE": "copy", "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    run([uv, "sync", "--python", _python()], env=env, cwd=project)
    venv = Venv(project / ".venv")
    assert "mistralai-agents" not in venv.dists()
    run([uv, "pip", "install", "--python", venv.python, "--no-deps", "--prerelease", "allow", AGENTS, "pip"],
        env=env, cwd=project)
    return venv


def test_recipe_b_uv_with_an_override(tmp_path: Path) -> None:
    venv = uv_project(tmp_path, ["mistralai-patched[gcp]", EVALUATIONS], (
        "# mistralai-patched installs mistralai/; no dependency may bring upstream's copy over it\n"
        "override-dependencies = [\"mistralai; sys_platform == 'never'\"]\n\n"
        "[tool.uv.sources]\n"
        f'mistralai-patched = {{ path = "{PATCHED_WHEEL}" }}\n'
    ))
    assert "mistralai" not in venv.dists()
    assert_ours_alone(venv, {"mistralai-patched": _patched_version()}, pip_check=False)
    # The price of this recipe: requirement checkers see no `mistralai` distribution (README).
    assert sorted(unmet_requirements(venv)) == [f"{d} requires mistralai, which is not installed." for d in (
        "mistralai-agents 1.1.0rc11", "mistralai-evaluations 0.8.4")]
    venv.selftest()
    assert "neighbours ok" in venv.imports(NEIGHBOURS).stdout


def test_recipe_b_uv_with_the_drop_in_wheel(tmp_path: Path) -> None:
    venv = uv_project(tmp_path, ["mistralai[gcp]", EVALUATIONS, INSTRUMENTATION], (
        'find-links = ["./wheels"]\n'
        f'constraint-dependencies = ["mistralai=={_drop_in_version()}"]\n'
    ))
    assert_ours_alone(venv, {"mistralai": _drop_in_version()})
    assert "mistralai-patched" not in venv.dists()
    venv.selftest()
    assert "neighbours ok" in venv.imports(NEIGHBOURS).stdout


def test_recipe_c_plain_pip_with_both_installed(tmp_path: Path) -> None:
    venv = Venv(tmp_path / "venv", _python())
    venv.pip(f"{PATCHED_WHEEL}[gcp]")
    assert venv.check()["exit_code"] == 0
    # A dependent pulls upstream mistralai, whose files overwrite ours: the fix is gone.
    venv.pip(EVALUATIONS)
    assert venv.dists()["mistralai"] != _drop_in_version()
    report = venv.check()
    assert report["exit_code"] == 1 and not report["patch_active"], json.dumps(report)[-2000:]
    upstream = f"mistralai {venv.dists()['mistralai']}"
    assert report["conflicting"] == [upstream]
    assert all(f["state"] == "not ours" and f["bytes_of"] == [upstream] for f in report["files"])
    assert any(f["bytes_of"] == [upstream] for f in report["shared_files"])
    assert "Recipe A" in " ".join(report["remedy"]["recipes"])
    text = run([venv.python, "-m", "mistralai_patched", "check"], check=False, cwd=tmp_path).stdout
    assert "NOT PATCHED" in text and "Recipe A" in text and "pip uninstall -y mistralai mistralai-patched" in text
    # One warning when the SDK is imported, however many of its modules are.
    code = ("import mistralai.client, mistralai.client.chat, mistralai.azure.client, mistralai.evaluations\n"
            "from mistralai import Mistral\n")
    warned = venv.imports(code)
    assert warned.stderr.count("ClobberedWarning") == 1, warned.stderr
    assert "NOT active" in warned.stderr and "mistralai-patched check" in warned.stderr
    assert "ClobberedWarning" not in venv.imports(code, env={SILENCE: "1"}).stderr
    # Reinstalling ours on top makes the fix active again, but fragile: check says so (exit 3).
    venv.pip("--force-reinstall", "--no-deps", PATCHED_WHEEL or "")
    report = venv.check()
    assert report["exit_code"] == 3 and report["patch_active"] and report["conflicting"] == [upstream]
    assert "ClobberedWarning" not in venv.imports(code).stderr
    # Following check's fix (recipe A) ends with one copy, ours, and the dependent still satisfied.
    links = tmp_path / "wheels"
    links.mkdir()
    shutil.copy(DROP_IN_WHEEL or "", links)
    commands = report["remedy"]["commands"]
    assert commands[0] == "pip uninstall -y mistralai mistralai-patched"
    run([venv.python, "-m", "pip", "uninstall", "-y", "mistralai", "mistralai-patched"])
    spec = commands[1].split("'")[1]
    venv.pip("--find-links", str(links), spec)
    assert_ours_alone(venv, {"mistralai": _drop_in_version()})
    venv.selftest()
