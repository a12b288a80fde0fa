"""The ``mistralai`` namespace, as installed by mistralai-patched.

Upstream 2.x ships ``mistralai`` as an implicit namespace package (no ``__init__.py``) so that
other distributions (mistralai-agents, mistralai-evaluations, ...) can install portions of it.
This file keeps that working (``pkgutil.extend_path`` gathers ``mistralai/`` directories from
every ``sys.path`` entry) and adds a lazy re-export so that ``from mistralai import Mistral``
works as it did in 1.x: names are looked up in ``mistralai.client`` on first use only.

Upstream's wheel has no file at this path, so this one survives upstream ``mistralai`` being
installed over mistralai-patched; it then warns, once per process, that the files Python imports
are not the patched ones (``mistralai_patched.integrity``; silenced by
``MISTRALAI_PATCHED_NO_CLOBBER_WARNING=1``).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)


def _warn_if_clobbered() -> None:
    try:
        from mistralai_patched.integrity import warn_if_clobbered
    except ImportError:  # mistralai_patched was removed while this file stayed
        return
    warn_if_clobbered(__path__)


_warn_if_clobbered()
del _warn_if_clobbered


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    client = importlib.import_module(f"{__name__}.client")
    try:
        value = getattr(client, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value
