"""``.speakeasy/gen.lock``, typed: per release line, the pristine fingerprints of the upstream
units our templates replace (and of those our code relies on), and the hashes of what we
rendered. Written by ``scripts/regenerate --accept-upstream``, one line at a time."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from .config import Line, yaml_module
from .errors import RegenError

LOCK_FORMAT = 2
"""Format 2: one entry per release line under ``lines`` (format 1 locked one upstream release)."""

HEADER = (
    "# Pristine fingerprints of the upstream units our templates replace (and of those our\n"
    "# code relies on), and the hashes of what we rendered, per release line. Written by\n"
    "# `scripts/regenerate [--upstream LINE] --accept-upstream`; do not edit.\n"
)


@dataclass
class LineLock:
    """What was accepted for one line.

    Attributes:
        upstream: ``{"name", "version", "sdist_sha256"}`` of the release the prints were taken from.
        targets: target package → file path → ``{"units": {unit: print}, "rendered": "sha256:…"}``.
        relies_on: module path (relative to the import package) → unit → print.
    """

    upstream: Dict[str, str] = field(default_factory=dict)
    targets: Dict[str, Dict[str, Dict[str, Any]]] = field(default_factory=dict)
    relies_on: Dict[str, Dict[str, str]] = field(default_factory=dict)

    def unit(self, package: str, path: str, unit: str) -> Optional[str]:
        """The locked print of a replaced unit, or None."""
        entry = self.targets.get(package, {}).get(path, {})
        units = entry.get("units", {}) if isinstance(entry, dict) else {}
        return units.get(unit) if isinstance(units, dict) else None

    def relied(self, path: str, unit: str) -> Optional[str]:
        """The locked print of a relied-on unit, or None."""
        return self.relies_on.get(path, {}).get(unit)

    def as_dict(self) -> Dict[str, Any]:
        return {"upstream": self.upstream, "targets": self.targets, "relies_on": self.relies_on}


@dataclass
class Lock:
    """The whole lock file: one :class:`LineLock` per line name."""

    lines: Dict[str, LineLock] = field(default_factory=dict)

    def line(self, line: Line) -> LineLock:
        """The entry for ``line`` (empty when the line was never accepted)."""
        return self.lines.get(line.name, LineLock())


def read_lock(path: Path) -> Lock:
    """Read the lock; a missing file is an empty lock.

    Raises:
        RegenError: the file is not YAML or not in format 2.
    """
    if not path.is_file():
        return Lock()
    try:
        data = yaml_module().safe_load(path.read_text(encoding="utf-8")) or {}
    except Exception as exc:
        raise RegenError(f"{path.name} is not valid YAML ({exc}). Restore it from git.") from exc
    if not isinstance(data, dict) or data.get("lock_format") != LOCK_FORMAT or not isinstance(data.get("lines"), dict):
        raise RegenError(
            f"{path} has an unknown format (this regeneration reads format {LOCK_FORMAT}). Restore it "
            "from git, or rebuild each line's entry with `scripts/regenerate --upstream LINE "
            "--accept-upstream` after reviewing the templates."
        )
    lines = {}
    for name, entry in data["lines"].items():
        if not isinstance(entry, dict):
            raise RegenError(f"{path}: the entry of line {name!r} is not a mapping. Restore the file from git.")
        lines[str(name)] = LineLock(
            dict(entry.get("upstream") or {}), dict(entry.get("targets") or {}), dict(entry.get("relies_on") or {})
        )
    return Lock(lines)


def write_lock(lock: Lock, path: Path) -> None:
    """Write the lock atomically (temporary file + rename)."""
    data = {"lock_format": LOCK_FORMAT, "lines": {name: entry.as_dict() for name, entry in lock.lines.items()}}
    text = HEADER + yaml_module().safe_dump(data, sort_keys=True, default_flow_style=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
