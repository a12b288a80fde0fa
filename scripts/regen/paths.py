"""Where the regeneration reads its inputs and writes its outputs (all inside the repository)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
GEN_YAML = ROOT / "gen.yaml"
SPEAKEASY = ROOT / ".speakeasy"
TEMPLATES = SPEAKEASY / "templates"
LOCK = SPEAKEASY / "gen.lock"
DEFAULT_OUT = ROOT / "src" / "mistralai"
BUILD_INFO = ROOT / "src" / "mistralai_patched" / "_build_info.json"
NAMESPACE_INIT = TEMPLATES / "namespace__init__.py"
PACKAGE_DIR = Path(__file__).resolve().parent
UPSTREAM_ENV = "MISTRALAI_PATCHED_UPSTREAM"
"""Environment variable naming the release line to build (its name, e.g. ``2.x``, or the
upstream version it pins, e.g. ``2.10.1``); unset means gen.yaml's ``default_line``."""
