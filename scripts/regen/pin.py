"""``scripts/regenerate --upstream VERSION --update-pin``: move a release line onto a new upstream
release in one command, when every unit we replace or rely on is unchanged."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

from . import paths
from .build import _interruptible, _uninterrupted, record_lock, regenerate, select_line
from .config import Line, load_config
from .errors import RegenError
from .index import fetch_release, list_releases, version_key
from .survey import line_for


def pinned_yaml(text: str, line: Line, version: str, sha256: str) -> str:
    """gen.yaml's text with ``line`` pinned to ``version`` (and ``sha256``) and its
    ``fork_revision`` reset to 1; every other byte (comments included) is kept.

    Raises:
        RegenError: the line's block does not hold exactly one ``version:``, ``sdist_sha256:`` and
            ``fork_revision:`` as gen.yaml writes them.
    """
    start = re.search(rf'^  "?{re.escape(line.name)}"?:\s*$', text, flags=re.MULTILINE)
    if start is None:
        raise RegenError(f"gen.yaml has no line `{line.name}:` under `lines:` to update. Nothing was written.")
    following = re.search(r"^(?:  \S|\S)", text[start.end() :], flags=re.MULTILINE)
    end = start.end() + following.start() if following else len(text)
    block = text[start.end() : end]
    edits = (
        (rf'(version:\s*)"?{re.escape(line.upstream_version)}"?', rf'\g<1>"{version}"'),
        (rf'(sdist_sha256:\s*)"?{line.sdist_sha256}"?', rf'\g<1>"{sha256}"'),
        (r"(fork_revision:\s*)\d+", r"\g<1>1"),
    )
    for pattern, replacement in edits:
        block, count = re.subn(pattern, replacement, block, flags=re.IGNORECASE)
        if count != 1:
            raise RegenError(
                f"gen.yaml's line {line.name} does not hold exactly one match of {pattern!r} (found "
                f"{count}); update the pin by hand (upstream.version, upstream.sdist_sha256, "
                "fork_revision: 1), then run `scripts/regenerate --accept-upstream`. Nothing was written."
            )
    return text[: start.end()] + block + text[end:]


def update_pin(
    version: str,
    index: Optional[str] = None,
    config_path: Path = paths.GEN_YAML,
    lock_path: Path = paths.LOCK,
    out: Path = paths.DEFAULT_OUT,
) -> str:
    """Pin the line ``version`` belongs to on it; returns what was done and what to commit.

    The release's sdist sha256 is taken from the index's own listing; the sdist is downloaded and
    verified against it. The release is then built with the line's templates and checked against
    the line's lock, as ``scripts/regenerate`` checks. Only when nothing we replace or rely on
    changed are gen.yaml (version, sha256, ``fork_revision: 1``) and the lock (the new release's
    fingerprints and rendered hashes) rewritten, together; ``out`` is then regenerated when it
    holds that line.

    Raises:
        UpstreamDiffers: upstream changed units we replace or rely on; the message has every
            difference and its diff (as ``--survey`` shows them). Nothing was written.
        RegenError: ``version`` is not a final release, is pinned already or is older than the
            line's pin, the index does not list it, or the download or the build failed. Nothing
            was written.
        Interrupted: SIGTERM, SIGINT or SIGHUP; nothing was written, or (during the final writes)
            everything.
    """
    version_key(version)
    config = load_config(config_path)
    for line in config.lines.values():
        if line.upstream_version == version:
            raise RegenError(f"Line {line.name} already pins {line.upstream_name} {version}: nothing to update.")
    line = line_for(config, version)
    holds_line = select_line(None, config_path).name == line.name  # does `out` hold this line's build?
    if version_key(version) < version_key(line.upstream_version):
        raise RegenError(
            f"{version} is older than line {line.name}'s pin {line.upstream_version}; --update-pin moves a "
            "line forward. Edit gen.yaml by hand to go back. Nothing was written."
        )
    with _interruptible():
        listed = {r.version: r for r in list_releases(line.upstream_name, index)}
        release = listed.get(version)
        if release is None:
            raise RegenError(
                f"The index lists no sdist of {line.upstream_name} {version} (its newest: "
                f"{max(listed, key=version_key) if listed else 'none'}). Nothing was written."
            )
        fetch_release(release)  # into the cache the build reads, verified against the index's sha256
        new_text = pinned_yaml(config_path.read_text(encoding="utf-8"), line, version, release.sha256)
        with tempfile.TemporaryDirectory(prefix="mistralai-patched-pin-") as tmp:
            new_yaml, new_lock = Path(tmp) / "gen.yaml", Path(tmp) / "gen.lock"
            new_yaml.write_text(new_text, encoding="utf-8")
            shutil.copyfile(lock_path, new_lock)
            moved = load_config(new_yaml).lines[line.name]
            assert (moved.upstream_version, moved.sdist_sha256, moved.fork_revision) == (version, release.sha256, 1)
            result = regenerate(
                Path(tmp) / "out" / "mistralai", config_path=new_yaml, lock_path=new_lock, upstream=line.name
            )
            record_lock(result, new_lock)
            with _uninterrupted():
                _replace(new_yaml, config_path)
                _replace(new_lock, lock_path)
        if holds_line:
            regenerate(out, config_path=config_path, lock_path=lock_path, upstream=line.name)
    return _said(line, moved, release.sha256, config_path, lock_path, out if holds_line else None)


def _replace(staged: Path, target: Path) -> None:
    """Move ``staged`` over ``target`` atomically (copied beside it first: another filesystem)."""
    beside = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(staged, beside)
    os.replace(beside, target)


def _said(old: Line, new: Line, sha256: str, config_path: Path, lock_path: Path, rebuilt: Optional[Path]) -> str:
    mentions = _mentions(old.upstream_version, [config_path, lock_path])
    lines = [
        f"Line {old.name} moved from {old.upstream_name} {old.upstream_version} to {new.upstream_version} "
        f"(sdist sha256 {sha256}, as the index lists it): no unit we replace or rely on changed.",
        f"  wrote {config_path} (upstream.version, upstream.sdist_sha256, fork_revision: 1)",
        f"  wrote {lock_path} (the new release's fingerprints and rendered hashes)",
        f"  builds: {new.dist_name} {new.version}, drop-in {new.drop_in_name} {new.drop_in_version}",
    ]
    if rebuilt is not None:
        lines.append(f"  regenerated {rebuilt}")
    lines += [
        "What to commit: run the tests (scripts/test; MISTRALAI_PATCHED_UPSTREAM=" + old.name + " for a "
        "line that is not the default), add a CHANGELOG.md entry, then",
        f"  git add {config_path.name} .speakeasy/{lock_path.name} CHANGELOG.md && "
        f"git commit -m 'Line {old.name}: upstream {old.upstream_name} {new.upstream_version}'",
    ]
    if os.environ.get(paths.UPSTREAM_ENV, "").strip() == old.upstream_version:
        lines.append(
            f"{paths.UPSTREAM_ENV} names the old pin {old.upstream_version}: set it to "
            f"{new.upstream_version} or to the line's name, {old.name}."
        )
    if mentions:
        lines.append(
            f"Files that still name {old.upstream_version} (versions in prose, CI checks): " + ", ".join(mentions)
        )
    return "\n".join(lines)


def _mentions(text: str, skip: List[Path]) -> List[str]:
    """Tracked files that mention ``text`` (``git grep``); empty outside a git checkout."""
    try:
        found = subprocess.run(
            ["git", "grep", "-l", "-F", text], cwd=paths.ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    skipped = {p.resolve() for p in skip}
    return [f for f in found.stdout.split() if (paths.ROOT / f).resolve() not in skipped]
