"""Regenerate ``src/mistralai/`` from a pinned upstream sdist with our templates rendered in.

Steps (see README "Maintainers"): read ``gen.yaml`` (:mod:`.config`) and pick the release line
→ fetch the line's pinned sdist with pip into a cache outside the tree and verify its sha256
(:mod:`.sdist`) → extract it to a temporary directory → map it into the import package the way
upstream's wheel does (``[tool.hatch.build.targets.wheel.sources]`` of the upstream pyproject)
→ for each target and replaced unit, fingerprint the pristine upstream code (:mod:`.units`) and
compare with the line's entry in ``.speakeasy/gen.lock`` (:mod:`.lock`) → render our templates
and splice their units over the upstream ones → write the tree atomically (temporary directory +
rename) (:mod:`.build`).

Any failure raises :class:`RegenError` with one paragraph naming the cause and the fix; nothing
in the output location is touched until the whole tree has been built.

Build-time dependencies: Jinja2, PyYAML, pip (and tomli on Python < 3.11).
"""

from __future__ import annotations

from .build import (
    Interrupted,
    Result,
    build_tree,
    ensure_fresh,
    inputs_hash,
    is_fresh,
    regenerate,
    select_line,
    write_build_info,
)
from .cli import main
from .config import Config, FileSpec, Line, Target, load_config, normalize
from .errors import RegenError
from .lock import LOCK_FORMAT, Lock, LineLock, read_lock, write_lock
from .paths import BUILD_INFO, DEFAULT_OUT, GEN_YAML, LOCK, ROOT, TEMPLATES, UPSTREAM_ENV
from .sdist import (
    UV_TO_PIP,
    _sha256_file,
    cache_dir,
    extract_sdist,
    fetch_sdist,
    pip_environment,
    upstream_metadata,
    wheel_sources,
)
from .units import IMPORTS_UNIT, Rendered, fingerprint, imports_text, locked_text, render_template, splice

__all__ = [
    "BUILD_INFO",
    "Config",
    "DEFAULT_OUT",
    "FileSpec",
    "GEN_YAML",
    "IMPORTS_UNIT",
    "Interrupted",
    "LOCK",
    "LOCK_FORMAT",
    "Line",
    "LineLock",
    "Lock",
    "ROOT",
    "RegenError",
    "Rendered",
    "Result",
    "TEMPLATES",
    "Target",
    "UPSTREAM_ENV",
    "UV_TO_PIP",
    "build_tree",
    "cache_dir",
    "ensure_fresh",
    "extract_sdist",
    "fetch_sdist",
    "fingerprint",
    "imports_text",
    "inputs_hash",
    "is_fresh",
    "load_config",
    "locked_text",
    "main",
    "normalize",
    "pip_environment",
    "read_lock",
    "regenerate",
    "render_template",
    "select_line",
    "splice",
    "upstream_metadata",
    "wheel_sources",
    "write_build_info",
    "write_lock",
    "_sha256_file",
]
