"""``scripts/regenerate --survey``: try every upstream release on the index against the release
line it belongs to, and report for each whether it builds, or every difference that stops it."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from . import paths
from .build import Difference, UpstreamDiffers, _interruptible, _LockedUpstream, build_tree, report
from .config import Config, Line, load_config
from .errors import RegenError
from .index import Release, fetch_release, list_releases, version_key
from .lock import read_lock
from .sdist import extract_sdist

DEFAULT_FROM = "2.3.2"


@dataclass
class Surveyed:
    """What the survey found for one upstream release.

    Attributes:
        version: The upstream release (``2.3.2``).
        line: The line it was tried against: that line's pinned upstream version (``2.10.1``).
        line_name: That line's name (``2.x``).
        builds: True when the release regenerates with today's templates and lock unchanged.
        differences: Every difference that stops it (none when it builds).
    """

    version: str
    line: str
    line_name: str
    builds: bool
    differences: List[Difference] = field(default_factory=list)

    def as_json(self) -> Dict[str, Any]:
        """``{"version", "line", "builds", "differences": [one line each]}``."""
        return {
            "version": self.version,
            "line": self.line,
            "builds": self.builds,
            "differences": [d.summary() for d in self.differences],
        }


def line_for(config: Config, version: str) -> Line:
    """The line an upstream release belongs to: the line whose pin has the same major version;
    for a major no line pins, the newest line below it (else the oldest line)."""
    major = version_key(version)[0]
    lines = sorted(config.lines.values(), key=lambda line: version_key(line.upstream_version))
    same = [line for line in lines if version_key(line.upstream_version)[0] == major]
    if same:
        return same[-1]
    below = [line for line in lines if version_key(line.upstream_version)[0] < major]
    return below[-1] if below else lines[0]


class _Sdists:
    """Each release's sdist extracted once under ``scratch``; the roots of the lines' locked
    releases are kept for the diffs, the others removed once surveyed."""

    def __init__(self, scratch: Path, releases: Dict[str, Release], keep: List[str]) -> None:
        self.scratch, self.releases, self.keep = scratch, releases, set(keep)
        self.roots: Dict[str, Path] = {}

    def root(self, version: str) -> Path:
        if version not in self.roots:
            release = self.releases.get(version)
            if release is None:
                raise RegenError(f"the index lists no sdist of {version}")
            self.roots[version] = extract_sdist(fetch_release(release), self.scratch / f"sdist-{version}")
        return self.roots[version]

    def done(self, version: str) -> None:
        if version not in self.keep and version in self.roots:
            shutil.rmtree(self.roots.pop(version).parent, ignore_errors=True)


def survey(
    start: str = DEFAULT_FROM,
    index: Optional[str] = None,
    config_path: Optional[Path] = None,
    lock_path: Optional[Path] = None,
    progress: Optional[Callable[[Surveyed], None]] = None,
) -> List[Surveyed]:
    """Try every final upstream release on the index from ``start`` to the newest.

    Each sdist is downloaded once into the sdist cache (verified against the sha256 the index
    lists), extracted once, laid out as upstream's wheel does and checked, in a temporary
    directory, against the lock and templates of the line it belongs to (:func:`line_for`), as
    ``scripts/regenerate`` would check it. Nothing in the repository is written.

    Args:
        start: The oldest release to survey (``X.Y.Z``).
        index: The simple API's base URL (default: :func:`.index.index_url`).
        progress: Called with each release's result as soon as it is known.

    Raises:
        RegenError: ``start`` is not a release number, or the index cannot be listed. A release
            that cannot be fetched or extracted is reported as not building (``not surveyed``),
            and the survey goes on.
        Interrupted: SIGTERM, SIGINT or SIGHUP; the temporary files were removed.
    """
    config = load_config(config_path or paths.GEN_YAML)
    lock = read_lock(lock_path or paths.LOCK)
    first = version_key(start)
    name = next(iter(config.lines.values())).upstream_name
    with _interruptible():
        listed = list_releases(name, index)
        releases = [r for r in listed if r.key >= first]
        if not releases:
            raise RegenError(f"The index lists no final release of {name} from {start} on. Nothing was surveyed.")
        locked_versions = [
            lock.line(line).upstream.get("version") or line.upstream_version for line in config.lines.values()
        ]
        found: List[Surveyed] = []
        with tempfile.TemporaryDirectory(prefix="mistralai-patched-survey-") as tmp:
            scratch = Path(tmp)
            # Every listed release can be extracted: the locked ones (for the diffs) may be older than start.
            sdists = _Sdists(scratch, {r.version: r for r in listed}, locked_versions)
            locked = {
                line.name: _LockedUpstream(line, lock.line(line), scratch / f"locked-{line.name}", sdists.root)
                for line in config.lines.values()
            }
            for release in releases:
                line = line_for(config, release.version)
                result = _survey_one(release, line, sdists, locked[line.name], scratch, lock_path)
                sdists.done(release.version)
                found.append(result)
                if progress is not None:
                    progress(result)
        return found


def _survey_one(
    release: Release, line: Line, sdists: _Sdists, locked: _LockedUpstream, scratch: Path, lock_path: Optional[Path]
) -> Surveyed:
    candidate = dataclasses.replace(line, upstream_version=release.version, sdist_sha256=release.sha256)
    result = Surveyed(release.version, line.upstream_version, line.name, builds=False)
    try:
        root = sdists.root(release.version)
    except RegenError as exc:
        result.differences = [Difference("not surveyed", release.filename, "", str(exc))]
        return result
    tree = scratch / f"tree-{release.version}"
    try:
        build_tree(tree, candidate, root, pristine=False, accept=False, lock_path=lock_path, locked_upstream=locked)
        result.builds = True
    except UpstreamDiffers as exc:
        result.differences = exc.differences
    except RegenError as exc:
        result.differences = [Difference("cannot build", release.filename, "", str(exc))]
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return result


def describe(result: Surveyed, details: bool) -> str:
    """The text report of one release: a heading line, then each difference (with its diff when
    ``details``)."""
    head = f"{result.version}  (line {result.line_name}, pinned {result.line}): "
    if result.builds:
        return head + "builds"
    if details:
        listed = report(result.line_name, result.version, result.differences)
    else:
        listed = "".join(f"    {d.summary()}\n" for d in result.differences).rstrip("\n")
    return head + f"stops on {len(result.differences)} difference(s)\n" + listed
