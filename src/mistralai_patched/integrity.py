"""Are the SDK files Python imports the ones our templates rendered? (stdlib only, import-cheap)

Upstream ``mistralai`` and ``mistralai-patched`` install the same files under ``mistralai/``; pip
lets the last one installed overwrite the other's. Our ``mistralai/__init__.py`` is not in
upstream's wheel (upstream ships ``mistralai`` as a namespace package), so it survives such an
overwrite and calls :func:`warn_if_clobbered` once per process, when the ``mistralai`` package
is first imported (``import mistralai.client`` imports it first).

Set ``MISTRALAI_PATCHED_NO_CLOBBER_WARNING=1`` to silence the warning (``mistralai-patched check``
still reports the state), or filter :class:`ClobberedWarning` with the warnings module.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional

SILENCE_ENV = "MISTRALAI_PATCHED_NO_CLOBBER_WARNING"


class ClobberedWarning(RuntimeWarning):
    """SDK files that mistralai-patched renders were replaced by other bytes (usually upstream's
    ``mistralai``, installed over ours by a package that depends on it)."""


def sha256_file(path: Path) -> Optional[str]:
    """sha256 hex digest of a file's bytes, or None if it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def active_file(wheel_path: str, package_path: Iterable[str]) -> Optional[Path]:
    """The file Python imports for ``wheel_path`` (``mistralai/<sub>/...``), found without importing it.

    Args:
        wheel_path: Path as in the wheel, e.g. ``mistralai/client/basesdk.py``.
        package_path: The directories of the ``mistralai`` package (its ``__path__``, or the
            import spec's ``submodule_search_locations``), in import order.

    Returns:
        The path in the first directory that has the subpackage (as the import system picks
        it), or None when no directory has it or the file is missing there.
    """
    parts = wheel_path.split("/")
    for location in package_path:
        if (Path(location) / parts[1]).is_dir():
            candidate = Path(location, *parts[1:])
            return candidate if candidate.is_file() else None
    return None


def rendered_not_ours(rendered: Dict[str, str], package_path: Iterable[str]) -> List[str]:
    """Rendered files whose active bytes are not the ones the regeneration recorded.

    Args:
        rendered: ``{wheel path: sha256 hex}`` from the build record (``build_info()["rendered"]``).
        package_path: The ``mistralai`` package directories, as for :func:`active_file`.

    Returns:
        Sorted wheel paths that are missing or hold other bytes; empty when the patch is active.
    """
    locations = list(package_path)
    bad = []
    for wheel_path, expected in rendered.items():
        path = active_file(wheel_path, locations)
        if path is None or sha256_file(path) != expected:
            bad.append(wheel_path)
    return sorted(bad)


def warn_if_clobbered(package_path: Iterable[str]) -> List[str]:
    """Emit one :class:`ClobberedWarning` if the rendered SDK files are not ours.

    Called by ``mistralai/__init__.py`` once per process. Never raises: a copy without a build
    record (a bare checkout) is not checked. Costs one read and sha256 of each rendered file
    (27 files, about 0.2 MB: under a millisecond, against about 300 ms to import the SDK).

    Returns:
        The wheel paths that are not ours (empty when the patch is active, silenced or unknown).
    """
    if os.environ.get(SILENCE_ENV, "") not in ("", "0"):
        return []
    try:
        from . import build_info

        rendered = build_info().get("rendered") or {}
        bad = rendered_not_ours(rendered, package_path) if rendered else []
    except Exception:  # noqa: BLE001 - an integrity check must never break the import
        return []
    if bad:
        example = next((p for p in bad if p.startswith("mistralai/client/")), bad[0])
        warnings.warn(
            f"mistralai-patched is installed, but {len(bad)} of the {len(rendered)} SDK files it patches "
            f"hold other bytes or are missing (e.g. {example}). Usually upstream 'mistralai', pulled in by "
            "a package that depends on it, was installed over them (or uninstalled after them, taking "
            "the shared files along). The HTTP-connection leak fix is NOT active. "
            "Run `mistralai-patched check` for what is installed and the "
            f"recipe that fixes it. Set {SILENCE_ENV}=1 to silence this warning.",
            ClobberedWarning,
            stacklevel=4,  # the import statement that first imported mistralai (import frames are skipped)
        )
    return bad
