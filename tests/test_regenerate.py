"""Bad input to the regeneration: a clear error naming cause and fix, and the tree left as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import regen  # noqa: E402

pytestmark = pytest.mark.packaging


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An existing output tree with a sentinel: it must survive every failed regeneration."""
    tree = tmp_path / "out" / "mistralai"
    tree.mkdir(parents=True)
    (tree / "sentinel.txt").write_text("before")
    return tree


def _unchanged(tree: Path) -> bool:
    return sorted(p.name for p in tree.parent.iterdir()) == ["mistralai"] and \
        [p.name for p in tree.iterdir()] == ["sentinel.txt"]


def _gen_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gen.yaml"
    path.write_text(text)
    return path


def test_malformed_yaml(tmp_path: Path, out: Path) -> None:
    with pytest.raises(regen.RegenError, match="not valid YAML"):
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, "upstream: [unclosed\n"))
    assert _unchanged(out)


def test_missing_field(tmp_path: Path, out: Path) -> None:
    text = (ROOT / "gen.yaml").read_text().replace("  sdist_sha256:", "  sha:")
    with pytest.raises(regen.RegenError, match=r"`lines\.3\.x\.upstream\.sdist_sha256` is missing"):
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, text))
    assert _unchanged(out)


def test_sha256_mismatch(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = regen.select_line().sdist_sha256
    text = (ROOT / "gen.yaml").read_text().replace(good, "ab" * 32)
    with pytest.raises(regen.RegenError, match="sha256") as info:
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, text))
    assert "Nothing was written" in str(info.value)
    assert _unchanged(out)


def test_unreachable_index(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRALAI_PATCHED_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")
    with pytest.raises(regen.RegenError, match="could not download"):
        regen.regenerate(out)
    assert _unchanged(out)


def _regenerate_against_changed_print(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
                                      unit_print: str) -> str:
    """Regenerate with a lock whose ``unit_print`` differs from upstream's: the error message.
    The tree and the lock must be left as they were."""
    lock = tmp_path / "gen.lock"
    changed = regen.LOCK.read_text().replace(unit_print, "sha256:" + "1" * 64)
    lock.write_text(changed)
    with pytest.raises(regen.RegenError) as info:
        regen.regenerate(out, lock_path=lock)
    assert _unchanged(out)
    assert lock.read_text() == changed
    return str(info.value)


def test_upstream_change_to_a_replaced_unit(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit_print = regen.read_lock(regen.LOCK).line(regen.select_line()).unit("mistralai.azure.client", "utils/retries.py", "retry")
    message = _regenerate_against_changed_print(tmp_path, out, monkeypatch, unit_print)
    assert "mistralai.azure.client/utils/retries.py: retry" in message
    assert "--accept-upstream" in message and "Nothing was written" in message


def test_upstream_change_to_a_relied_on_unit(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit the hook fast path assumes (gen.yaml `relies_on`) is locked like a replaced one."""
    unit_print = regen.read_lock(regen.LOCK).line(regen.select_line()).relied("client/_hooks/tracing.py", "TracingHook.before_request")
    message = _regenerate_against_changed_print(tmp_path, out, monkeypatch, unit_print)
    assert "mistralai/client/_hooks/tracing.py: TracingHook.before_request: relied-on unit changed" in message
    assert "hookpath.py" in message and "--accept-upstream" in message and "Nothing was written" in message


def test_upstream_change_to_a_modules_imports(tmp_path: Path) -> None:
    """What 3.x did to every module we replace units in: ``import httpx`` became
    ``import httpx2 as httpx``, no unit body changed. The lock must see it, with the diff (shown
    on the 2.x line, whose modules still ``import httpx``)."""
    config = regen.load_config().lines["2.x"]
    sdist = regen.fetch_sdist(config.upstream_name, config.upstream_version, config.sdist_sha256)
    root = regen.extract_sdist(sdist, tmp_path / "sdist")
    module = root / "src" / "mistralai" / "client" / "utils" / "retries.py"
    text = module.read_text()
    assert "\nimport httpx\n" in text
    module.write_text(text.replace("\nimport httpx\n", "\nimport httpx2 as httpx\n", 1))
    with pytest.raises(regen.RegenError) as info:
        regen.build_tree(tmp_path / "tree", config, root, pristine=False, accept=False)
    message = str(info.value)
    assert "--- mistralai.client/utils/retries.py: the module's imports" in message
    assert "\n-import httpx\n" in message and "\n+import httpx2 as httpx\n" in message
    assert "mistralai.azure.client" not in message, "only the changed module is reported"


def test_every_line_locks_its_modules_imports() -> None:
    lock = regen.read_lock(regen.LOCK)
    assert sorted(lock.lines) == sorted(regen.load_config().lines)
    for entry in lock.lines.values():
        assert all(regen.IMPORTS_UNIT in units for units in entry.relies_on.values())
        assert all(regen.IMPORTS_UNIT in e["units"] for files in entry.targets.values() for e in files.values())


def test_3x_registers_the_service_account_hook_and_locks_it() -> None:
    """Relied-on units include 3.x's hook registrations (ServiceAccountAuthHook, 3.0.0)."""
    entry = regen.read_lock(regen.LOCK).lines["3.x"]
    assert "init_hooks" in entry.relies_on["client/_hooks/registration.py"]
    assert "ServiceAccountAuthHook.before_request" in entry.relies_on["client/_hooks/service_account_auth.py"]


def test_line_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    config = regen.load_config()
    monkeypatch.delenv(regen.UPSTREAM_ENV, raising=False)
    assert config.line().name == config.default_line == "3.x"
    assert config.line().version == "3.7.0.post1" and config.line().drop_in_version == "3.7.0+patched.1"
    assert config.line().http_library == "httpx2"
    monkeypatch.setenv(regen.UPSTREAM_ENV, "2.10.1")
    assert config.line().name == "2.x" and config.line().version == "2.10.1.post5"
    assert config.line().drop_in_version == "2.10.1+patched.5" and config.line().http_library == "httpx"
    assert config.line("3.x").upstream_version == "3.7.0"
    monkeypatch.setenv(regen.UPSTREAM_ENV, "9.9.9")
    with pytest.raises(regen.RegenError, match=r"MISTRALAI_PATCHED_UPSTREAM='9.9.9' names no release line.*3.x \(upstream 3.7.0\)"):
        config.line()


def test_unknown_line_leaves_the_tree(out: Path) -> None:
    with pytest.raises(regen.RegenError, match="--upstream='4.x' names no release line"):
        regen.regenerate(out, upstream="4.x")
    assert _unchanged(out)


def test_line_library_checked_against_upstream_metadata(tmp_path: Path, out: Path) -> None:
    """gen.yaml says which HTTP library a line runs on; upstream's dependencies must agree."""
    text = (ROOT / "gen.yaml").read_text().replace("http_library: httpx2", "http_library: httpx")
    with pytest.raises(regen.RegenError, match="runs on httpx, but upstream 3.7.0 depends on none"):
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, text), upstream="3.x")
    assert _unchanged(out)


def test_relied_on_unit_that_upstream_no_longer_has(tmp_path: Path, out: Path) -> None:
    text = (ROOT / "gen.yaml").read_text().replace("[CustomUserAgentHook.before_request]",
                                                   "[CustomUserAgentHook.gone]")
    with pytest.raises(regen.RegenError, match=r"CustomUserAgentHook\.gone: relied-on unit gone\n.*relies_on"):
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, text))
    assert _unchanged(out)


def test_malformed_relies_on(tmp_path: Path, out: Path) -> None:
    text = (ROOT / "gen.yaml").read_text().replace(
        "  client/_hooks/traceparent.py: [TraceparentInjectionHook.before_request]",
        "  client/_hooks/traceparent.py: TraceparentInjectionHook.before_request")
    with pytest.raises(regen.RegenError, match="`relies_on` must map module paths"):
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, text))
    assert _unchanged(out)


@pytest.mark.parametrize("replacement, message", [
    ("      mistralai.nowhere:", r"`lines\.3\.x\.templates` must map targets"),
    ("      mistralai.client:\n        utils/retries.py: {template: retries.py.j2}\n",
     r"`lines\.3\.x\.templates\.mistralai\.client` names utils/retries\.py, which `templates` has"),
])
def test_malformed_line_templates(tmp_path: Path, out: Path, replacement: str, message: str) -> None:
    """A line's own templates name a target of gen.yaml and a file the common table does not."""
    text = (ROOT / "gen.yaml").read_text()
    marker = "      mistralai.client:\n        utils/jsonl.py:"
    assert marker in text
    if replacement.endswith("\n"):
        text = text.replace(marker, replacement + "        utils/jsonl.py:")
    else:
        text = text.replace(marker, replacement + "\n        utils/jsonl.py:")
    with pytest.raises(regen.RegenError, match=message):
        regen.regenerate(out, config_path=_gen_yaml(tmp_path, text))
    assert _unchanged(out)


def test_line_templates_apply_to_their_target_only() -> None:
    """The 3.x line's own template (the NDJSON stream) is rendered into the main client alone."""
    lines = regen.load_config().lines
    files = {t.package: {f.path for f in t.files} for t in lines["3.x"].targets}
    assert "utils/jsonl.py" in files["mistralai.client"]
    assert all("utils/jsonl.py" not in paths for package, paths in files.items() if package != "mistralai.client")
    assert all("utils/jsonl.py" not in {f.path for f in t.files} for t in lines["2.x"].targets)


def test_cli_exit_code_and_message(tmp_path: Path) -> None:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--check"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout


def test_pristine_tree_has_no_fork_code(tmp_path: Path) -> None:
    result = regen.regenerate(tmp_path / "mistralai", pristine=True)
    text = (result.out / "client" / "basesdk.py").read_text()
    assert "mistralai_patched" not in text and result.rendered_hashes == {}
    shutil.rmtree(result.out)


# ------------------------------------------------------------- splicing units and rebinding imports

UPSTREAM_MODULE = '''"""header"""
from typing import Any, get_type_hints


class Unset:
    def __bool__(self) -> bool:
        return False


def helper() -> int:
    return 1
'''


def test_splice_replaces_and_adds_units() -> None:
    rendered = regen.Rendered({"helper": "def helper() -> int:\n    return 2\n",
                               "Unset.__deepcopy__": "    def __deepcopy__(self, memo: Any = None):\n        return self\n"},
                              ["import os"])
    out = regen.splice(UPSTREAM_MODULE, rendered, "pkg/mod.py", 7, ("Unset.__deepcopy__",))
    namespace: dict = {}
    exec(compile(out, "mod.py", "exec"), namespace)  # noqa: S102 - our own test module
    assert namespace["helper"]() == 2
    sentinel = namespace["Unset"]()
    import copy

    assert copy.deepcopy(sentinel) is sentinel and not sentinel
    assert "(fork revision 7): replaced helper; added Unset.__deepcopy__; see NOTICE." in out


def test_splice_refuses_an_import_that_upstream_rebinds_later() -> None:
    source = UPSTREAM_MODULE + "\nfrom typing import get_type_hints\n"
    rendered = regen.Rendered({}, ["from mistralai_patched.fastpath import cached_type_hints as get_type_hints"])
    assert "cached_type_hints as get_type_hints" in regen.splice(UPSTREAM_MODULE, rendered, "pkg/mod.py", 1)
    with pytest.raises(regen.RegenError, match="binds get_type_hints after the import"):
        regen.splice(source + "get_type_hints = None\n", rendered, "pkg/mod.py", 1)


def test_splice_adds_an_import_that_only_looks_present() -> None:
    """``import httpx`` is a substring of ``import httpx2 as httpx`` but binds another module."""
    source = '"""header"""\nimport httpx2 as httpx\n\n\ndef helper() -> int:\n    return 1\n'
    units = {"helper": "def helper() -> int:\n    return 2\n"}
    out = regen.splice(source, regen.Rendered(units, ["import httpx"]), "pkg/mod.py", 1)
    assert "\nimport httpx\n" in out
    same = regen.splice(source, regen.Rendered(units, ["import httpx2 as httpx"]), "pkg/mod.py", 1)
    assert same.count("import httpx2 as httpx") == 1


def test_locked_text_of_an_added_method_is_its_class() -> None:
    text = regen.locked_text(UPSTREAM_MODULE, "mod.py", "Unset.__deepcopy__", added=True)
    assert text is not None and text.startswith("class Unset:") and "__bool__" in text
    assert regen.locked_text(UPSTREAM_MODULE, "mod.py", "Missing.__deepcopy__", added=True) is None


def test_variant_of_each_distribution_name() -> None:
    config = regen.select_line()
    assert config.variant("mistralai-patched") == ("patched", config.version)
    assert config.variant("Mistralai_Patched") == ("patched", config.version)
    assert config.variant(config.drop_in_name) == ("drop-in", config.drop_in_version)
    with pytest.raises(regen.RegenError, match="scripts/build-drop-in"):
        config.variant("mistralai-other")


def test_drop_in_build_renames_only_the_project() -> None:
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("build_drop_in", str(ROOT / "scripts" / "build-drop-in"))
    spec = importlib.util.spec_from_loader("build_drop_in", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    text = (ROOT / "pyproject.toml").read_text()
    renamed = module.drop_in_pyproject(text, "mistralai", "mistralai-patched")
    assert renamed.replace('name = "mistralai"\n', 'name = "mistralai-patched"\n', 1) == text
    assert 'mistralai-patched = "mistralai_patched.__main__:main"' in renamed  # the command keeps its name
    with pytest.raises(regen.RegenError, match="exactly one line"):
        module.drop_in_pyproject(text.replace('name = "mistralai-patched"', 'name = "x"'), "mistralai",
                                 "mistralai-patched")


def test_pristine_and_accept_upstream_refused(tmp_path: Path, out: Path) -> None:
    lock_before = regen.LOCK.read_text()
    with pytest.raises(regen.RegenError, match="do not go together") as info:
        regen.regenerate(out, pristine=True, accept=True)
    assert "Nothing was written" in str(info.value)
    assert _unchanged(out) and regen.LOCK.read_text() == lock_before
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--pristine", "--accept-upstream",
                           "--out", str(tmp_path / "p" / "mistralai")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "do not go together" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_interrupted_regeneration_leaves_nothing_behind(tmp_path: Path, signame: str) -> None:
    """A signal while the tree is being built: the temporary directory is removed and the output
    is left as it was (or, had the signal come during the final swap, replaced whole). Whatever
    the timing, nothing is left behind; the test needs one run that was really interrupted."""
    import signal
    import time

    regen.fetch_sdist(*(lambda c: (c.upstream_name, c.upstream_version, c.sdist_sha256))(regen.select_line()))
    for attempt in range(5):
        parent = tmp_path / f"try{attempt}"
        tree = parent / "mistralai"
        tree.mkdir(parents=True)
        (tree / "sentinel.txt").write_text("before")
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "regenerate"), "--pristine", "--out", str(tree)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not list(parent.glob(".regen-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
        leftovers = sorted(p.name for p in parent.iterdir() if p.name != "mistralai")
        assert leftovers == [], leftovers
        if proc.returncode == 0:  # finished before the signal: the new tree, whole
            assert (tree / "client" / "basesdk.py").is_file() and not (tree / "sentinel.txt").exists()
            continue
        assert proc.returncode == 128 + getattr(signal, signame), err
        assert "Traceback" not in err and "left as it was" in err
        assert [p.name for p in tree.iterdir()] == ["sentinel.txt"] or (tree / "client" / "basesdk.py").is_file()
        return
    pytest.fail("the regeneration finished before the signal in 5 tries")
