"""Tracking upstream (issue 14): the survey of every release, and ``--update-pin``, against a
package index served on loopback whose releases are the line's pinned sdist and edited copies of
it. Nothing here touches the repository's gen.yaml, lock or src/mistralai."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import regen  # noqa: E402
from regen.build import UpstreamDiffers  # noqa: E402
from regen.pin import update_pin  # noqa: E402
from regen.survey import survey  # noqa: E402

pytestmark = pytest.mark.packaging

LINE = regen.select_line()
MAJOR, MINOR, PATCH = (int(p) for p in LINE.upstream_version.split("."))
SAME = f"{MAJOR}.{MINOR}.{PATCH + 1}"  # an upstream release that changes nothing we replace or rely on
CHANGED = f"{MAJOR}.{MINOR}.{PATCH + 2}"  # one that changes a replaced unit, an import, a relied-on unit


def _change(root: Path) -> None:
    """A replaced unit's body, the imports of another target's module, and a relied-on unit gone."""
    retries = root / "src" / "mistralai" / "client" / "utils" / "retries.py"
    retries.write_text(retries.read_text().replace("def retry(", "def retry(  # upstream changed this\n", 1))
    azure = root / "packages" / "azure" / "src" / "mistralai" / "azure" / "client" / "basesdk.py"
    azure.write_text("import os\n" + azure.read_text())
    agent = root / "src" / "mistralai" / "client" / "_hooks" / "custom_user_agent.py"
    agent.write_text(agent.read_text().replace("def before_request(", "def before_request_renamed(", 1))


def _release(pinned: Path, version: str, edit: Optional[Callable[[Path], None]], scratch: Path) -> bytes:
    """The pinned sdist re-versioned as ``version`` (top directory and PKG-INFO), then edited."""
    root = regen.extract_sdist(pinned, scratch / version)
    info = root / "PKG-INFO"
    info.write_text(info.read_text().replace(f"Version: {LINE.upstream_version}", f"Version: {version}", 1))
    if edit:
        edit(root)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as dst:
        dst.add(root, arcname=f"mistralai-{version}")
    return out.getvalue()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simple-API index (PEP 691 JSON) on loopback with the pinned release, SAME and CHANGED."""
    pinned = regen.fetch_sdist(LINE.upstream_name, LINE.upstream_version, LINE.sdist_sha256)
    scratch = tmp_path_factory.mktemp("releases")
    files: Dict[str, bytes] = {
        f"mistralai-{LINE.upstream_version}.tar.gz": pinned.read_bytes(),
        f"mistralai-{SAME}.tar.gz": _release(pinned, SAME, None, scratch),
        f"mistralai-{CHANGED}.tar.gz": _release(pinned, CHANGED, _change, scratch),
        f"mistralai-{MAJOR}.{MINOR}.{PATCH + 3}rc1.tar.gz": b"a pre-release: never surveyed",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/simple/mistralai/":
                listing = [{"filename": n, "url": f"/files/{n}", "hashes": {"sha256": hashlib.sha256(b).hexdigest()}}
                           for n, b in files.items()]
                body, kind = json.dumps({"name": "mistralai", "files": listing}).encode(), "application/vnd.pypi.simple.v1+json"
            elif self.path.startswith("/files/") and self.path[7:] in files:
                body, kind = files[self.path[7:]], "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty sdist cache: every release comes from the loopback index."""
    monkeypatch.setenv("MISTRALAI_PATCHED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_survey_reports_every_release_and_every_difference_at_once(index: str, cache: Path) -> None:
    results = {r.version: r for r in survey(LINE.upstream_version, index=index)}
    assert sorted(results) == sorted([LINE.upstream_version, SAME, CHANGED]), "final releases only"
    assert results[LINE.upstream_version].builds and results[SAME].builds
    changed = results[CHANGED]
    assert not changed.builds and changed.line == LINE.upstream_version and changed.line_name == LINE.name
    assert sorted(d.summary() for d in changed.differences) == [
        "mistralai.azure.client/basesdk.py: the module's imports: imports changed",
        "mistralai.client/utils/retries.py: retry: body changed",
        "mistralai/client/_hooks/custom_user_agent.py: CustomUserAgentHook.before_request: relied-on unit gone",
    ]
    body = next(d for d in changed.differences if d.kind == "body changed")
    assert "+def retry(  # upstream changed this" in body.detail, "the diff from the locked release"


def test_survey_json_from_the_command_line(index: str, cache: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--survey", "--json", "--from", SAME,
                           "--index-url", index], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [sorted(r) for r in listed] == [["builds", "differences", "line", "version"]] * 2
    assert [(r["version"], r["line"], r["builds"], len(r["differences"])) for r in listed] == [
        (SAME, LINE.upstream_version, True, 0), (CHANGED, LINE.upstream_version, False, 3)]


def test_survey_of_an_unreachable_index(cache: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--survey", "--index-url",
                           "http://127.0.0.1:9/simple"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Could not list the releases" in proc.stderr and "Traceback" not in proc.stderr


def _copies(tmp_path: Path) -> tuple:
    config, lock = tmp_path / "gen.yaml", tmp_path / "gen.lock"
    config.write_bytes(regen.GEN_YAML.read_bytes())
    lock.write_bytes(regen.LOCK.read_bytes())
    return config, lock


@pytest.mark.parametrize("selector", ["name", "pin"])
def test_update_pin_moves_the_line_in_one_command(index: str, cache: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, selector: str) -> None:
    """Also when the line is selected by the very pin being moved (MISTRALAI_PATCHED_UPSTREAM=X.Y.Z):
    the tree is rebuilt, and the message says to update the variable."""
    monkeypatch.setenv(regen.UPSTREAM_ENV, LINE.name if selector == "name" else LINE.upstream_version)
    config, lock = _copies(tmp_path)
    out = tmp_path / "out" / "mistralai"
    said = update_pin(SAME, index=index, config_path=config, lock_path=lock, out=out)
    moved = regen.load_config(config).lines[LINE.name]
    assert (moved.upstream_version, moved.fork_revision) == (SAME, 1)
    assert moved.sdist_sha256 == hashlib.sha256((cache / "sdists" / f"mistralai-{SAME}.tar.gz").read_bytes()).hexdigest()
    before = regen.GEN_YAML.read_text().splitlines()
    after = config.read_text().splitlines()
    assert len(before) == len(after) and sum(a != b for a, b in zip(before, after)) <= 3, "only the pin's lines"
    entry = regen.read_lock(lock).line(moved)
    assert entry.upstream["version"] == SAME and entry.upstream["sdist_sha256"] == moved.sdist_sha256
    assert (out / "client" / "basesdk.py").is_file(), "the line's tree was regenerated"
    assert "git commit" in said and f"{LINE.name}" in said
    assert (f"{regen.UPSTREAM_ENV} names the old pin" in said) == (selector == "pin")
    regen.regenerate(tmp_path / "again" / "mistralai", config_path=config, lock_path=lock, upstream=LINE.name)


def test_update_pin_stops_with_every_difference_and_writes_nothing(index: str, cache: Path, tmp_path: Path) -> None:
    config, lock = _copies(tmp_path)
    out = tmp_path / "out" / "mistralai"
    out.mkdir(parents=True)
    (out / "sentinel.txt").write_text("before")
    with pytest.raises(UpstreamDiffers) as info:
        update_pin(CHANGED, index=index, config_path=config, lock_path=lock, out=out)
    assert len(info.value.differences) == 3 and "Nothing was written" in str(info.value)
    assert config.read_bytes() == regen.GEN_YAML.read_bytes() and lock.read_bytes() == regen.LOCK.read_bytes()
    assert [p.name for p in out.iterdir()] == ["sentinel.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "gen.lock", "gen.yaml", "out"]


@pytest.mark.parametrize("version,message", [
    (LINE.upstream_version, "already pins"),
    (f"{MAJOR}.{MINOR}.{PATCH + 9}", "lists no sdist"),
    (f"{MAJOR}.{MINOR}.{PATCH + 3}rc1", "not a final release"),
])
def test_update_pin_refuses(index: str, cache: Path, tmp_path: Path, version: str, message: str) -> None:
    config, lock = _copies(tmp_path)
    with pytest.raises(regen.RegenError, match=message):
        update_pin(version, index=index, config_path=config, lock_path=lock, out=tmp_path / "out")
    assert config.read_bytes() == regen.GEN_YAML.read_bytes() and lock.read_bytes() == regen.LOCK.read_bytes()


def test_a_target_that_now_equals_the_main_clients_points_at_the_feature_switches(tmp_path: Path) -> None:
    """What stopped 3.x at first: azure's and gcp's units became the main client's, and the
    message did not say that the line's feature switches accept them. Shown on 2.x, whose azure
    target still has other switches than the main client: its lock is made to say that azure's
    ``retry`` used to differ and that the main client's is what azure's is now."""
    config = regen.load_config().lines["2.x"]
    lock = regen.read_lock(regen.LOCK)
    units = {pkg: lock.lines["2.x"].targets[pkg]["utils/retries.py"]["units"]
             for pkg in ("mistralai.client", "mistralai.azure.client")}
    assert units["mistralai.client"]["retry"] != units["mistralai.azure.client"]["retry"]
    units["mistralai.client"]["retry"] = units["mistralai.azure.client"]["retry"]
    units["mistralai.azure.client"]["retry"] = "sha256:" + "1" * 64
    regen.write_lock(lock, tmp_path / "gen.lock")
    sdist = regen.fetch_sdist(config.upstream_name, config.upstream_version, config.sdist_sha256)
    root = regen.extract_sdist(sdist, tmp_path / "sdist")
    with pytest.raises(UpstreamDiffers) as info:
        regen.build_tree(tmp_path / "tree", config, root, pristine=False, accept=False, lock_path=tmp_path / "gen.lock")
    by_where = {d.where: d for d in info.value.differences}
    azure = by_where["mistralai.azure.client/utils/retries.py"]
    assert "give mistralai.azure.client the switches of mistralai.client" in azure.detail
    assert "lines.2.x.features" in azure.detail
    assert "switches" not in by_where["mistralai.client/utils/retries.py"].detail


def test_html_simple_api_listing() -> None:
    """An index that only speaks PEP 503 HTML: sha256 from the link fragment; yanked files, wheels,
    pre-releases and files without a sha256 are left out."""
    from regen.index import _html_files

    page = """<html><body>
    <a href="../../files/mistralai-3.7.0.tar.gz#sha256=%s">mistralai-3.7.0.tar.gz</a>
    <a href="https://files.example/mistralai-3.6.0.tar.gz#sha256=%s" data-yanked="">mistralai-3.6.0.tar.gz</a>
    <a href="/f/mistralai-3.7.0-py3-none-any.whl#sha256=%s">mistralai-3.7.0-py3-none-any.whl</a>
    <a href="/f/mistralai-3.8.0rc1.tar.gz#sha256=%s">mistralai-3.8.0rc1.tar.gz</a>
    <a href="/f/mistralai-3.5.0.tar.gz">mistralai-3.5.0.tar.gz</a>
    </body></html>""" % ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    files = _html_files(page, "https://index.example/simple/mistralai/")
    assert files[0] == ("mistralai-3.7.0.tar.gz", "https://index.example/files/mistralai-3.7.0.tar.gz", "a" * 64, False)
    assert files[1][3] is True and files[4][2] == ""


def test_update_pin_needs_a_release_number(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--update-pin", "--upstream", "3.x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a final release number" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--update-pin"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs --upstream VERSION" in proc.stderr


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_interrupted_survey_leaves_nothing_behind(index: str, cache: Path, tmp_path: Path, signame: str) -> None:
    """A signal while the survey has sdists extracted: its temporary directory is removed, the
    exit status is 128 + the signal, and the message says so (no traceback)."""
    import signal
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "regenerate"), "--survey", "--from",
                                 LINE.upstream_version, "--index-url", index], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not list(scratch.glob("mistralai-patched-survey-*/sdist-*")) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
        assert list(scratch.iterdir()) == [], list(scratch.iterdir())
        if proc.returncode == 0:
            continue  # finished before the signal
        assert proc.returncode == 128 + getattr(signal, signame), err
        assert "Traceback" not in err and "temporary files were removed" in err
        return
    pytest.fail("the survey finished before the signal in 5 tries")
