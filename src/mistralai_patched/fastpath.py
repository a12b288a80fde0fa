"""Per-type caches for the SDK's per-call work (rendered into ``utils/serializers.py``,
``utils/queryparams.py``, ``utils/url.py`` and ``utils/forms.py`` of every SDK target).

Upstream (mistralai 2.10.1) builds a new pydantic model class with ``pydantic.create_model`` in
``unmarshal`` and ``marshal_json`` on every call, for every request body and every server-sent
event, and re-evaluates ``typing.get_type_hints`` on the request class for every request. What
they build depends only on the type, so it is built once per type here and kept in bounded
caches (least recently used entries dropped first). Types that cannot be hashed are not cached:
the caller's builder runs every time, as upstream does.

``utils/eventstreaming.py`` turns every server-sent event into a dict with
``dataclasses.asdict``, which deep-copies the event's JSON data, then serialises that dict with
``json.dumps`` at once; :func:`shallow_asdict` gives the same dict without the copy.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import typing
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

__all__ = [
    "MAX_ENTRIES",
    "cached_model",
    "cached_type_hints",
    "shallow_asdict",
    "boundary_pattern",
    "is_json_tree",
    "cache_info",
    "clear",
]

MAX_ENTRIES: int = 1024
"""Bound on entries per cache (model classes; type-hint dicts)."""


class _BoundedCache:
    """A small thread-safe LRU mapping; building happens outside the lock (a race builds twice,
    which is harmless: both results are equivalent)."""

    def __init__(self) -> None:
        self._data: "OrderedDict[Hashable, Any]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.uncacheable = 0

    def get_or_build(self, key: Any, build: Callable[[], Any]) -> Tuple[Any, bool]:
        """``(value, cached)``: ``cached`` is False when ``key`` cannot be hashed."""
        try:
            value = self._data[key]
        except TypeError:
            self.uncacheable += 1
            return build(), False
        except KeyError:
            pass
        else:
            try:
                self._data.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile: still a valid value
                pass
            self.hits += 1
            return value, True
        value = build()
        with self._lock:
            self.misses += 1
            self._data[key] = value
            while len(self._data) > MAX_ENTRIES:
                self._data.popitem(last=False)
        return value, True

    def info(self) -> Dict[str, int]:
        return {"entries": len(self._data), "hits": self.hits, "misses": self.misses, "uncacheable": self.uncacheable}

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = self.uncacheable = 0


_MODELS = _BoundedCache()
_MODELS_BY_ID: Dict[Tuple[str, int], Tuple[Any, type]] = {}
_HINTS = _BoundedCache()


def cached_model(name: str, typ: Any, build: Callable[[], type]) -> type:
    """The model class ``build()`` makes for ``(name, typ)``, built once and cached.

    Args:
        name: The model's name as upstream passes it to ``create_model`` ("Unmarshaller",
            "Marshaller"); part of the key.
        typ: The type the model wraps (a pydantic model, ``List[...]``, a ``Union``...). Types that
            compare equal share an entry; an unhashable type is not cached.
        build: Makes the class (upstream's ``create_model(...)`` call).

    Returns:
        The model class. Callers must treat it as immutable (upstream's code does).
    """
    hit = _MODELS_BY_ID.get((name, id(typ)))
    if hit is not None and hit[0] is typ:
        return hit[1]
    model, cached = _MODELS.get_or_build((name, typ), build)
    if cached:
        # Hashing a typing construct walks all its arguments on every call; the same type object
        # is usually passed again, so remember it by identity too (holding it, so that its id
        # cannot be reused while the entry exists).
        if len(_MODELS_BY_ID) >= MAX_ENTRIES:
            _MODELS_BY_ID.clear()
        _MODELS_BY_ID[(name, id(typ))] = (typ, model)
    return model


def cached_type_hints(
    obj: Any,
    globalns: Optional[Dict[str, Any]] = None,
    localns: Optional[Dict[str, Any]] = None,
    include_extras: bool = False,
) -> Dict[str, Any]:
    """``typing.get_type_hints`` with the result cached per class.

    Same signature and result as ``typing.get_type_hints``; only the plain form on a class
    (no namespaces given) is cached, every other call goes straight to ``typing``. A copy of
    the cached dict is returned, so callers may modify it as they could upstream.

    Raises:
        Whatever ``typing.get_type_hints`` raises (e.g. ``NameError`` for an unresolvable
        forward reference); failures are not cached.
    """
    if globalns is not None or localns is not None or not isinstance(obj, type):
        return typing.get_type_hints(obj, globalns, localns, include_extras)
    key: Tuple[Any, bool] = (obj, include_extras)
    return dict(_HINTS.get_or_build(key, lambda: typing.get_type_hints(obj, include_extras=include_extras))[0])


def shallow_asdict(obj: Any) -> Dict[str, Any]:
    """``dataclasses.asdict`` without the deep copy: ``{field name: value}`` of a dataclass
    instance, values shared, not copied.

    Equal to ``dataclasses.asdict(obj)`` when no value is (or contains) a dataclass instance:
    true of ``ServerEvent`` in ``utils/eventstreaming.py``, whose values are strings, integers and
    JSON-decoded data, and whose dict is only passed to ``json.dumps``.

    Raises:
        TypeError: ``obj`` is not a dataclass instance (as ``dataclasses.asdict`` does).
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError("shallow_asdict() should be called on dataclass instances")
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@functools.lru_cache(maxsize=8)
def boundary_pattern(boundaries: Tuple[bytes, ...]) -> "re.Pattern[bytes]":
    """A compiled pattern matching any of ``boundaries``, tried in the given order at each
    position (regex alternation), so ``pattern.search(buffer, i)`` finds the boundary upstream's
    byte loop in ``utils/eventstreaming.py`` finds first at or after ``i``; a boundary that does
    not fit before the end of the buffer does not match, as there."""
    return re.compile(b"|".join(re.escape(b) for b in boundaries))


_JSON_SCALARS = (str, int, float, bool, type(None))


def is_json_tree(value: Any, _depth: int = 0) -> bool:
    """Whether ``value`` is made only of ``dict`` (string keys), ``list``, ``str``, ``int``,
    ``float``, ``bool`` and ``None`` (exact built-in types; subclasses, tuples, generators, models
    and anything else make it False). Upstream's ``_coerce_iterables_for_type`` returns such a
    value unchanged (equal), so ``unmarshal`` may skip it. Trees deeper than 64 levels are
    reported False (the coercion then runs, as upstream)."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if _depth > 64:
        return False
    if kind is list:
        return all(is_json_tree(item, _depth + 1) for item in value)
    if kind is dict:
        return all(type(key) is str and is_json_tree(item, _depth + 1) for key, item in value.items())
    return False


def cache_info() -> Dict[str, Dict[str, int]]:
    """Entries, hits, misses and uncacheable lookups of each cache (for benchmarks and tests)."""
    return {"models": _MODELS.info(), "type_hints": _HINTS.info()}


def clear() -> None:
    """Empty both caches (tests, or after redefining classes at runtime)."""
    _MODELS.clear()
    _MODELS_BY_ID.clear()
    _HINTS.clear()
