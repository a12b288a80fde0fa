"""mistralai-patched: Mistral's Python SDK (``mistralai``) with its HTTP-connection leaks fixed.

This package holds the fork's own code: the response-release helper the rendered SDK templates
call (:mod:`mistralai_patched.release`), provenance, and the ``check`` / ``selftest`` command line
(``python -m mistralai_patched`` or ``mistralai-patched``). The SDK itself is imported as upstream
documents it: ``from mistralai.client import Mistral``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Dict


def build_info() -> Dict[str, Any]:
    """Provenance written by the regeneration: upstream base, fork revision, rendered hashes.

    Returns an empty dict when this copy was not built by the regeneration (e.g. a bare checkout).
    """
    try:
        return json.loads(resources.files(__name__).joinpath("_build_info.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


__version__: str = build_info().get("version", "0+unknown")
