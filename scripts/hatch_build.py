"""Hatchling hooks: regenerate src/mistralai/ when missing or stale, and take the version,
dependencies, extras and Requires-Python from gen.yaml and upstream's metadata (PKG-INFO of the
pinned sdist) instead of retyping them. Building a wheel from our sdist needs no network: the
sdist carries the rendered tree and its build record, which are fresh for its inputs.

The same hooks build the drop-in variant (scripts/build-drop-in): a copy of the project whose
pyproject.toml names the distribution like upstream's; the version then comes from gen.yaml's
drop-in scheme, and the build record names that distribution.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

# Dependencies of the fork's own code (mistralai_patched), on top of upstream's.
OWN_DEPENDENCIES = ["anyio>=3.7"]


def _regen(root: str) -> Any:
    sys.path.insert(0, str(Path(root) / "scripts"))
    try:
        import regen
    finally:
        sys.path.pop(0)
    return regen


def _ensure(root: str, distribution: str) -> Dict[str, Any]:
    regen = _regen(root)
    try:
        return regen.ensure_fresh(distribution)
    except regen.RegenError as exc:
        raise SystemExit(f"mistralai-patched: regeneration failed:\n{exc}") from None


class ForkMetadataHook(MetadataHookInterface):
    """Fill the dynamic metadata from the regeneration's build record."""

    def update(self, metadata: Dict[str, Any]) -> None:
        info = _ensure(self.root, metadata["name"])
        meta = info["metadata"]
        metadata["version"] = info["version"]
        metadata["requires-python"] = meta["requires_python"]
        metadata["dependencies"] = list(meta["dependencies"]) + OWN_DEPENDENCIES
        metadata["optional-dependencies"] = {k: list(v) for k, v in meta["optional_dependencies"].items()}


class ForkBuildHook(BuildHookInterface):
    """Make sure the rendered tree is present and current before any target is built."""

    def initialize(self, version: str, build_data: Dict[str, Any]) -> None:
        _ensure(self.root, self.metadata.name)
