"""mistralai-patched: Mistral's Python SDK (``mistralai``) with its HTTP-connection leaks fixed.

This package holds the fork's own code: the response-release helper the rendered SDK templates
call (:mod:`mistralai_patched.release`), provenance, and the ``check`` / ``selftest`` command line
(``python -m mistralai_patched`` or ``mistralai-patched``). The SDK itself is imported as upstream
documents it: ``from mistralai.client import Mistral``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import sys
import json
from importlib import resources
from types import ModuleType
from typing import Any, Dict, Tuple


def build_info() -> Dict[str, Any]:
    """Provenance written by the regeneration: upstream base, fork revision, rendered hashes.

    Read once per process (the installed record does not change under a running program); each
    call returns a fresh copy. An empty dict when this copy was not built by the regeneration
    (e.g. a bare checkout).
    """
    return copy.deepcopy(_read_build_info())


@functools.lru_cache(maxsize=1)
def _read_build_info() -> Dict[str, Any]:
    try:
        return json.loads(resources.files(__name__).joinpath("_build_info.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def line_library() -> ModuleType:
    """The HTTP library module (``httpx`` or ``httpx2``) the installed release line's upstream
    code is generated against (gen.yaml ``http_library``; 2.x: httpx, 3.x: httpx2), imported on
    first call. The default for our own clients (``selftest``, the loopback helpers); the SDK's
    runtime helpers never use it, they work with the library of the client in hand.

    Raises:
        ImportError: the library is not installed (a broken install: upstream requires it).
    """
    name = build_info().get("http_library") or "httpx"
    # sys.modules first: on Python 3.10 import_module takes the module's import lock even when
    # the module is loaded, and a garbage-collector finalizer that imports while that lock is
    # being taken trips CPython's lock bookkeeping (KeyError in _ModuleLock.acquire).
    return sys.modules.get(name) or importlib.import_module(name)


def built_line() -> str:
    """Name of the release line this copy was built for (gen.yaml ``lines``: ``3.x``, ``2.x``).

    Raises:
        RuntimeError: this copy has no build record (not built by the regeneration).
    """
    line = build_info().get("line")
    if not isinstance(line, str):
        raise RuntimeError("this copy of mistralai_patched has no build record: run scripts/regenerate")
    return line


def targets() -> Tuple[str, ...]:
    """Import packages of the SDK targets this build rendered (gen.yaml ``targets``)."""
    return tuple(build_info().get("targets") or ("mistralai.client", "mistralai.azure.client", "mistralai.gcp.client"))


__version__: str = build_info().get("version", "0+unknown")
