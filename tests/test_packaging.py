"""Packaging: name, version, imports, namespace neighbours, rendered files, wheel parity.

Wheel parity runs against the wheel named by ``MISTRALAI_PATCHED_WHEEL`` (.ci/run sets it to the
wheel it built) and otherwise against the rendered tree that would be packaged; the same checks run
on the drop-in variant's wheel when ``MISTRALAI_DROP_IN_WHEEL`` names it.
"""

from __future__ import annotations

import base64
import email.message
import email.parser
import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from packaging.version import Version

from mistralai_patched import build_info

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import regen  # noqa: E402

pytestmark = pytest.mark.packaging
ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "src" / "mistralai"
# What the fork adds to upstream's wheel, besides the files its templates render.
ADDED = {"mistralai/__init__.py"}
ADDED_PREFIXES = ("mistralai_patched/", "mistralai_patched-")


def test_distribution_name_and_version() -> None:
    """mistralai-patched is <upstream>.post<revision>; the drop-in is <upstream>+patched.<revision>."""
    info = build_info()
    config = regen.load_config().lines[build_info()["line"]]
    version = Version(info["version"])
    base = Version(info["upstream"]["version"])
    assert version > base and version.base_version == base.base_version
    assert version < Version(f"{base.major}.{base.minor}.{base.micro + 1}")
    if info["distribution"] == "mistralai-patched":
        assert info.get("variant") == "patched" and version.post == config.fork_revision and not version.local
    else:
        assert (info["distribution"], info.get("variant")) == (config.drop_in_name, "drop-in")
        assert version.local == f"patched.{config.fork_revision}" and version.public == str(base)
    assert md.version(info["distribution"]) == info["version"]


def test_dependencies_come_from_upstream_metadata() -> None:
    requires = md.requires(build_info()["distribution"]) or []
    names = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for r in requires}
    library = build_info()["http_library"]
    assert {library, "pydantic", "opentelemetry-api", "google-auth"} <= names
    if library == "httpx2":  # the 3.x line requires neither httpx nor httpcore
        assert not {"httpx", "httpcore"} & names, names
    assert any("extra == \"gcp\"" in r or "extra == 'gcp'" in r for r in requires)
    assert not any("mistralai[" in r or r.startswith("mistralai ") for r in requires), "no self-reference to upstream"


def test_imports_unchanged() -> None:
    from mistralai import Mistral as Lazy
    from mistralai.azure.client import MistralAzure  # noqa: F401
    from mistralai.client import Mistral
    from mistralai.gcp.client import MistralGCP  # noqa: F401

    assert Lazy is Mistral


def test_namespace_portion_on_another_sys_path_entry(tmp_path: Path) -> None:
    """mistralai.agents / mistralai.evaluations install into the namespace from elsewhere."""
    portion = tmp_path / "mistralai" / "neighbour"
    portion.mkdir(parents=True)
    (portion / "__init__.py").write_text("VALUE = 'from another distribution'\n")
    code = (
        "import mistralai.neighbour as n; from mistralai import Mistral; import mistralai.client;"
        "assert n.VALUE == 'from another distribution'; print(Mistral.__module__)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "mistralai.client.sdk"


def test_rendered_files_keep_header_and_say_modified() -> None:
    """Each rendered file starts with upstream's own header, then our modification notice."""
    with zipfile.ZipFile(_upstream_wheel()) as zf:
        for rel in build_info()["rendered"]:
            lines = (TREE.parent / rel).read_text().splitlines()
            upstream = zf.read(rel).decode().splitlines()
            header = [line for line in upstream[:3] if line.startswith(('"""', "#"))]
            assert lines[: len(header)] == header, rel
            assert lines[len(header)].startswith("# Modified by mistralai-patched (fork revision"), rel


def test_lock_records_what_is_rendered() -> None:
    """Changing a template without recording it in gen.lock is caught here."""
    lock = regen.read_lock(regen.LOCK).lines[build_info()["line"]]
    recorded = {
        f"{pkg.replace('.', '/')}/{path}": entry["rendered"].split(":", 1)[1]
        for pkg, files in lock.targets.items() for path, entry in files.items()
    }
    assert recorded == build_info()["rendered"]


def _record_sha(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def _upstream_wheel() -> Path:
    """Upstream's wheel of the pinned release, downloaded with pip into the cache once."""
    info = build_info()["upstream"]
    cache = regen.cache_dir().parent / "wheels"
    wheels = sorted(cache.glob(f"mistralai-{info['version']}-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(cache), f"mistralai=={info['version']}"], check=True, timeout=600)
        wheels = sorted(cache.glob(f"mistralai-{info['version']}-*.whl"))
    return wheels[0]


def _upstream_wheel_hashes() -> Dict[str, str]:
    with zipfile.ZipFile(_upstream_wheel()) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = [line.split(",") for line in zf.read(record).decode().splitlines() if line]
    return {path: _record_sha(h.split("=", 1)[1]) for path, h, *_ in rows if h and ".dist-info/" not in path}


def _wheel_hashes(wheel: str) -> Dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()
                if not n.endswith("/") and ".dist-info/" not in n}


def _wheel_metadata(wheel: str) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.BytesParser().parsebytes(zf.read(name))


def _wheel_build_info(wheel: str) -> Dict[str, Any]:
    with zipfile.ZipFile(wheel) as zf:
        return json.loads(zf.read("mistralai_patched/_build_info.json"))


def _our_hashes(wheel: Optional[str] = None) -> Dict[str, str]:
    wheel = wheel or os.environ.get("MISTRALAI_PATCHED_WHEEL")
    if wheel:
        return _wheel_hashes(wheel)
    out = {}
    for base in (TREE, TREE.parent / "mistralai_patched"):
        for path in base.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                out[path.relative_to(TREE.parent).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


DROP_IN_WHEEL = os.environ.get("MISTRALAI_DROP_IN_WHEEL")
needs_drop_in = pytest.mark.skipif(not DROP_IN_WHEEL, reason="MISTRALAI_DROP_IN_WHEEL not set (scripts/build-drop-in)")


@pytest.mark.parametrize("variant", ["patched", pytest.param("drop-in", marks=needs_drop_in)])
def test_wheel_parity_with_upstream(variant: str) -> None:
    upstream = _upstream_wheel_hashes()
    ours = _our_hashes(DROP_IN_WHEEL if variant == "drop-in" else None)
    rendered = set(build_info()["rendered"])
    missing = sorted(set(upstream) - set(ours))
    changed = sorted(p for p in upstream if p in ours and ours[p] != upstream[p] and p not in rendered)
    added = sorted(p for p in set(ours) - set(upstream) if p not in ADDED and not p.startswith(ADDED_PREFIXES))
    assert not missing, f"upstream files missing from ours: {missing[:10]}"
    assert not changed, f"upstream files changed that we do not render: {changed[:10]}"
    assert not added, f"files added that are not listed: {added[:10]}"
    assert rendered <= set(upstream) and all(ours[p] != upstream[p] for p in rendered)


def test_drop_in_version_sorts_after_upstream_and_meets_its_pins() -> None:
    """Other packages' ``mistralai`` requirements pick the drop-in over upstream's release."""
    from packaging.specifiers import SpecifierSet

    config = regen.load_config().lines[build_info()["line"]]
    drop_in, base = Version(config.drop_in_version), Version(config.upstream_version)
    assert drop_in > base and drop_in.public == str(base) and drop_in.local
    nxt = f"{base.major}.{base.minor}.{base.micro + 1}"
    # mistralai-evaluations, mistralai-agents, openinference[instruments] (2.x), exact pins
    dependents = [">=2.7.1,<3.0.0", ">=2.8.0,<3"] if base.major == 2 else [">=3.0.0,<4", ">=3"]
    for spec in dependents + [">=2.0.0", f"=={base}", f"<{nxt}", f"~={base.major}.{base.minor}"]:
        assert SpecifierSet(spec).contains(drop_in, prereleases=False), spec
    assert max([base, drop_in]) == drop_in


@needs_drop_in
def test_drop_in_wheel_is_the_same_tree_under_upstreams_name() -> None:
    """Same files, byte for byte, as mistralai-patched's; only the name, version and record differ."""
    assert DROP_IN_WHEEL is not None
    config = regen.load_config().lines[build_info()["line"]]
    drop_in = _wheel_hashes(DROP_IN_WHEEL)
    ours = _our_hashes()
    info_path = "mistralai_patched/_build_info.json"
    assert {p: h for p, h in drop_in.items() if p != info_path} == {p: h for p, h in ours.items() if p != info_path}
    meta = _wheel_metadata(DROP_IN_WHEEL)
    assert meta["Name"] == config.drop_in_name and meta["Version"] == config.drop_in_version
    info = _wheel_build_info(DROP_IN_WHEEL)
    assert (info["distribution"], info["variant"], info["version"]) == (
        config.drop_in_name, "drop-in", config.drop_in_version)
    assert info["rendered"] == build_info()["rendered"]
    patched_wheel = os.environ.get("MISTRALAI_PATCHED_WHEEL")
    if patched_wheel:
        assert sorted(meta.get_all("Requires-Dist")) == sorted(_wheel_metadata(patched_wheel).get_all("Requires-Dist"))


def test_version_reporting_is_consistent() -> None:
    """What the README's version table says each variant reports."""
    import mistralai.client
    import mistralai_patched
    from mistralai.client.sdkconfiguration import SDKConfiguration

    info = build_info()
    base = info["upstream"]["version"]
    assert mistralai_patched.__version__ == md.version(info["distribution"]) == info["version"]
    # The API surface is upstream's: __version__ and the User-Agent keep upstream's base version.
    assert mistralai.client.__version__ == base == Version(info["version"]).base_version
    assert SDKConfiguration.user_agent.startswith(f"speakeasy-sdk/python {base} ")
    if info["variant"] == "patched":
        with pytest.raises(md.PackageNotFoundError):
            md.version("mistralai")  # instrumentations keyed on `mistralai` need the drop-in (README)


PATCHED_WHEEL = os.environ.get("MISTRALAI_PATCHED_WHEEL")


def _site_packages(venv: Path) -> Path:
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


def _tree(site: Path) -> Dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes()
            for top in ("mistralai", "mistralai_patched") for p in sorted((site / top).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.skipif(not PATCHED_WHEEL, reason="MISTRALAI_PATCHED_WHEEL not set (python -m build)")
def test_drop_in_command_from_a_plain_install(tmp_path: Path) -> None:
    """`mistralai-patched drop-in` in a venv where the wheel was installed with --no-deps (stdlib
    only, offline) writes the drop-in wheel; installed in a fresh venv it is the same tree byte for
    byte (the build record names the drop-in), and `check` is green. It equals scripts/build-drop-in's
    wheel, and it refuses an install whose files were overwritten."""
    assert PATCHED_WHEEL is not None
    pip = ["-m", "pip", "install", "-q", "--disable-pip-version-check"]
    source = tmp_path / "source"
    subprocess.run([sys.executable, "-m", "venv", str(source)], check=True)
    subprocess.run([str(source / "bin" / "python"), *pip, "--no-deps", PATCHED_WHEEL], check=True)
    made = subprocess.run([str(source / "bin" / "mistralai-patched"), "drop-in", "--out", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    wheel = Path(made.stdout.strip())
    config = regen.load_config().lines[build_info()["line"]]
    assert wheel.name == f"{config.drop_in_name}-{config.drop_in_version}-py3-none-any.whl"
    again = subprocess.run([str(source / "bin" / "mistralai-patched"), "drop-in", "--out", str(tmp_path / "w2")],
                           capture_output=True, text=True, timeout=120)
    assert Path(again.stdout.strip()).read_bytes() == wheel.read_bytes(), "the same install gives the same bytes"
    if DROP_IN_WHEEL:
        with zipfile.ZipFile(wheel) as ours, zipfile.ZipFile(DROP_IN_WHEEL) as built:
            assert sorted(ours.namelist()) == sorted(built.namelist())
            differ = [n for n in ours.namelist() if ours.read(n) != built.read(n)]
            assert all(n.endswith((".dist-info/RECORD", ".dist-info/WHEEL")) for n in differ), differ

    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    subprocess.run([str(target / "bin" / "python"), *pip, str(wheel)], check=True, timeout=600)
    before, after = _tree(_site_packages(source)), _tree(_site_packages(target))
    info_path = "mistralai_patched/_build_info.json"
    assert {p: b for p, b in after.items() if p != info_path} == {p: b for p, b in before.items() if p != info_path}
    info = json.loads(after[info_path])
    assert (info["distribution"], info["variant"], info["version"]) == (config.drop_in_name, "drop-in",
                                                                         config.drop_in_version)
    assert {k: v for k, v in info.items() if k not in ("distribution", "variant", "version")} == \
        {k: v for k, v in json.loads(before[info_path]).items() if k not in ("distribution", "variant", "version")}
    check = subprocess.run([str(target / "bin" / "mistralai-patched"), "check"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{config.drop_in_name} {config.drop_in_version}" in check.stdout

    basesdk = _site_packages(source) / "mistralai" / "client" / "basesdk.py"
    basesdk.write_bytes(basesdk.read_bytes() + b"\n# overwritten\n")
    refused = subprocess.run([str(source / "bin" / "mistralai-patched"), "drop-in", "--out", str(tmp_path / "w3")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "mistralai/client/basesdk.py" in refused.stderr
    assert "--force-reinstall" in refused.stderr
    assert not (tmp_path / "w3").exists() or not list((tmp_path / "w3").iterdir())


def test_drop_in_command_refuses_an_editable_install(tmp_path: Path) -> None:
    """Where the running copy is not an install with its files in RECORD (this editable dev
    install), the command says how to build one instead, and writes nothing."""
    dist = md.distribution(build_info()["distribution"])
    if any(str(f).startswith("mistralai_patched/") for f in dist.files or []):
        pytest.skip("mistralai_patched is installed from a wheel here; test_drop_in_command_from_a_plain_install covers it")
    proc = subprocess.run([sys.executable, "-m", "mistralai_patched", "drop-in", "--out", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "editable" in proc.stderr and "scripts/build-drop-in" in proc.stderr
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())
