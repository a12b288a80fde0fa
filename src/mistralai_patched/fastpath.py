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

:func:`init_model` is ``BaseModel.__init__`` of every target (``types/basemodel.py``): generated
methods pass every optional argument left out as ``UNSET``, and pydantic validated each against
its union on every call; once shown to give ``UNSET`` itself, such an argument is left out.

:func:`find_discriminator` is upstream's ``get_discriminator`` search (``utils/annotations.py``)
without the nested functions it defines on every call, which left a reference cycle each time.

Per server-sent event, upstream's ``_parse_event`` decodes the block, splits it into lines with a
regular expression, parses the data with ``json.loads``, turns the event into a dict, serialises
it with ``json.dumps``, and the decoder parses that text again (``pydantic_core.from_json``)
before validating it. :func:`parse_event` does the common shape of an event (``data:``, or
``event:`` then ``data:``, LF only) in one match, parses the data once with pydantic-core straight
from the bytes, and hands the decoder an :class:`EventJSON`: the event's JSON text carrying that
value, which ``utils.unmarshal_json`` validates without parsing again. Every other block, and any
event the fast path cannot finish, goes through upstream's ``_parse_event``, so results and
errors are upstream's.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
import threading
import typing
from collections import OrderedDict
from typing import Any, Callable, Dict, FrozenSet, Hashable, List, Optional, Set, Tuple

import pydantic
from pydantic_core import from_json

__all__ = [
    "MAX_ENTRIES",
    "cached_model",
    "cached_type_hints",
    "shallow_asdict",
    "boundary_pattern",
    "is_json_tree",
    "validates_to_itself",
    "remember_validates_to_itself",
    "lacks_field_metadata",
    "base_init",
    "init_model",
    "NOT_PARSED",
    "utf8_json",
    "EventJSON",
    "find_discriminator",
    "parsed_url",
    "build_request",
    "security_parts",
    "contains_model",
    "dump_model",
    "parse_event",
    "cache_info",
    "clear",
]

MAX_ENTRIES: int = 1024
"""Bound on entries per cache (model classes; type-hint dicts)."""


def _store(table: Dict[Any, Any], key: Any, value: Any) -> None:
    """``table[key] = value``, the table emptied first when it holds :data:`MAX_ENTRIES` entries:
    the bound of every plain table here (entries cost no more to rebuild than to keep)."""
    if len(table) >= MAX_ENTRIES:
        table.clear()
    table[key] = value


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


class _ByIdentity:
    """Values remembered by the identity of a type object, under a name. Hashing a typing
    construct walks all its arguments on every call, and the same type object is usually passed
    again, so a lookup by ``id`` is the fast way in. Each entry holds its type, so that the id
    cannot be reused while the entry exists; the table is emptied when it reaches
    :data:`MAX_ENTRIES`. Not locked: a race loses an entry or stores it twice, both harmless."""

    def __init__(self) -> None:
        self._data: Dict[Tuple[str, int], Tuple[Any, Any]] = {}

    def get(self, name: str, typ: Any) -> Any:
        """The value remembered for ``(name, typ)``, or None."""
        hit = self._data.get((name, id(typ)))
        return hit[1] if hit is not None and hit[0] is typ else None

    def put(self, name: str, typ: Any, value: Any) -> None:
        _store(self._data, (name, id(typ)), (typ, value))

    def clear(self) -> None:
        self._data.clear()


_MODELS = _BoundedCache()
_BY_IDENTITY = _ByIdentity()
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
    hit = _BY_IDENTITY.get(name, typ)
    if hit is not None:
        return hit
    model, cached = _MODELS.get_or_build((name, typ), build)
    if cached:  # the equal-type entry is also remembered by identity (see _ByIdentity)
        _BY_IDENTITY.put(name, typ, model)
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


_SELF_VALIDATING: Dict[Tuple[Any, type], bool] = {}


def validates_to_itself(typ: Any, value: Any) -> bool:
    """Whether ``value`` (None, or an ``Unset`` instance such as ``UNSET``) is known to validate
    to itself against ``typ``, as :func:`remember_validates_to_itself` recorded it.

    A type's validation of None or of an ``Unset`` does not depend on anything but the type and
    the value's class, so ``utils.unmarshal`` returns the value at once the second time, instead of
    upstream's full pydantic validation (about 7 µs; generated methods pass every optional
    argument left out through it). Looked up by equality, not identity: generated code builds
    ``OptionalNullable[...]`` anew on every call. An unhashable type is never remembered. Bounded
    by :data:`MAX_ENTRIES`.
    """
    try:
        return (typ, type(value)) in _SELF_VALIDATING
    except TypeError:
        return False


def remember_validates_to_itself(typ: Any, value: Any, result: Any) -> None:
    """Record that ``value`` (None or an ``Unset`` instance) validated against ``typ`` gave back
    ``result``: only a result that *is* ``value`` is remembered. A value the validation changes or
    rejects (pydantic's ``ValidationError`` for a type that does not accept it) is validated again
    every time, as upstream does."""
    if result is not value:
        return
    try:
        _store(_SELF_VALIDATING, (typ, type(value)), True)
    except TypeError:
        pass


def lacks_field_metadata(obj: Any, metadata_type: type, find: Callable[[Any, type], Any]) -> bool:
    """Whether upstream's ``utils.get_query_params(obj)`` / ``utils.get_headers(obj)`` (no globals)
    would find nothing in ``obj``: ``obj`` is not a pydantic model instance, or no field of its
    class carries ``metadata_type`` (``find(field_info, metadata_type)``, upstream's
    ``utils.find_field_metadata``, gives nothing for every field).

    Upstream walks every field of the request model on every call, looking for query-parameter
    and header fields (about 20 µs for a chat request, which has none). Field metadata is part of
    the generated class, so the answer is computed once per (class, metadata type): remembered by
    the class's identity (``_ByIdentity``, shared with :func:`cached_model`).

    Raises:
        Whatever ``find`` raises (not cached).
    """
    if not isinstance(obj, pydantic.BaseModel):
        return True
    cls = type(obj)
    known = _BY_IDENTITY.get("lacks field metadata", cls)
    if known is None:
        known = {}
        _BY_IDENTITY.put("lacks field metadata", cls, known)
    lacks = known.get(metadata_type)
    if lacks is None:
        lacks = known[metadata_type] = all(find(field, metadata_type) is None for field in cls.model_fields.values())
    return lacks


def base_init(function: Callable[..., None]) -> Callable[..., None]:
    """Mark ``function``, a ``BaseModel.__init__`` that gives what pydantic's gives, as a base
    init (``__pydantic_base_init__``, as pydantic's own ``RootModel.__init__`` is marked).

    pydantic-core then builds a nested model from a dict without calling ``__init__`` (a custom
    ``__init__`` would be called for every nested model, through Python). Without the marker the
    result is the same, only slower: :func:`init_model` also gives pydantic's result."""
    function.__pydantic_base_init__ = True  # type: ignore[attr-defined]
    return function


class _UnsetArguments:
    """Per model class: the fields that :func:`init_model` may leave out when passed ``UNSET``."""

    __slots__ = ("candidates", "proven")

    def __init__(self, candidates: FrozenSet[str]) -> None:
        self.candidates = candidates  # defaulted to the sentinel, no alias, no validator can see it
        self.proven: Set[str] = set()  # seen validated to the sentinel itself and marked set


def _unset_arguments(cls: type, unset: Any) -> _UnsetArguments:
    """The class's :class:`_UnsetArguments`, remembered by its identity (``_ByIdentity``, shared
    with :func:`cached_model`); no candidates when pydantic must see every argument."""
    state: Optional[_UnsetArguments] = _BY_IDENTITY.get("unset arguments", cls)
    if state is not None:
        return state
    decorators = getattr(cls, "__pydantic_decorators__", None)
    candidates: FrozenSet[str] = frozenset()
    # Validators of any kind (an attribute pydantic renamed counts as one) and model_post_init
    # could see which arguments were passed: such a class is left to pydantic.
    validators = ("validators", "field_validators", "root_validators", "model_validators")
    if (
        decorators is not None
        and not any(getattr(decorators, kind, True) for kind in validators)
        and getattr(cls, "__pydantic_post_init__", None) is None
    ):
        candidates = frozenset(
            name
            for name, field in cls.model_fields.items()  # type: ignore[attr-defined]
            if field.default is unset
            and field.default_factory is None
            and field.alias in (None, name)
            and field.validation_alias in (None, name)
        )
    state = _UnsetArguments(candidates)
    _BY_IDENTITY.put("unset arguments", cls, state)
    return state


def init_model(self: Any, data: Dict[str, Any], pydantic_init: Callable[..., None], unset: Any) -> None:
    """``pydantic_init(self, **data)`` (pydantic's ``BaseModel.__init__``), without validating the
    arguments passed as the ``UNSET`` sentinel to fields that default to it.

    Generated methods build their request model with every optional argument, most of them
    ``UNSET`` (22 of 28 for a chat completion); pydantic validates each against its
    ``OptionalNullable`` union, which was most of the model's construction (about 13 µs of 17 µs
    per chat request). Such an argument is left out when the result is provably the same:
    - the field defaults to ``unset`` itself (no factory), has no alias, and the class has no
      validator that could see the arguments (field, model or root validators) and no
      ``model_post_init``;
    - a construction of this class already validated ``UNSET`` for the field to ``unset``
      itself and marked the field set: until then, the field's argument goes through pydantic.
    The fields left out are then marked set (``model_fields_set``), as passing them marks them.
    When validation fails, pydantic's ``__init__`` runs again with every argument, so the
    ``ValidationError`` is pydantic's own (its ``input`` shows every argument).

    Args:
        self: The model instance being initialised.
        data: The keyword arguments of ``__init__``.
        pydantic_init: ``pydantic.BaseModel.__init__``.
        unset: The target's ``UNSET`` sentinel.

    Raises:
        pydantic.ValidationError: As ``pydantic_init(self, **data)`` raises it.
    """
    state = _unset_arguments(type(self), unset)
    candidates, proven = state.candidates, state.proven
    if not candidates:
        pydantic_init(self, **data)
        return
    kept: Dict[str, Any] = {}
    left_out: List[str] = []
    learning = False
    for key, value in data.items():
        if value is unset and key in candidates:
            if key in proven:
                left_out.append(key)
                continue
            learning = True
        kept[key] = value
    if learning or not left_out:
        pydantic_init(self, **data)
        if learning:
            values, marked = self.__dict__, self.__pydantic_fields_set__
            proven.update(
                key
                for key in candidates.intersection(data)
                if data[key] is unset and values.get(key) is unset and key in marked
            )
        return
    try:
        pydantic_init(self, **kept)
    except pydantic.ValidationError:
        pydantic_init(self, **data)  # raises pydantic's error for the arguments as given
        raise
    self.__pydantic_fields_set__.update(left_out)


NOT_PARSED: Any = object()
"""What :func:`utf8_json` gives when it leaves a body to upstream's way."""

_UTF8_NAMES = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})


def utf8_json(response: Any) -> Any:
    """The JSON value of a read response's body, parsed by pydantic-core straight from its bytes
    when its text (``response.text``) would be those bytes decoded as UTF-8; else
    :data:`NOT_PARSED`.

    Upstream's ``unmarshal_json_response`` parses ``response.text``: the HTTP library finds the
    text's encoding by parsing the Content-Type header with ``email.message`` and decodes the
    body (about 8 µs of a 200-byte answer), then the text is parsed. The text is the UTF-8 decoding
    of the bytes when the encoding is UTF-8: an encoding set on the response (``_encoding``,
    the attribute httpx and httpx2 keep ``response.encoding = ...`` in; tests/test_differential.py
    checks they still do) is a UTF-8 name, or none is set, the Content-Type has no parameters (so
    no charset) and the client's ``default_encoding`` is a UTF-8 name (httpx's default). Bytes
    that are not UTF-8 are rejected by the parser, where upstream's text would carry U+FFFD
    instead: every failure gives :data:`NOT_PARSED`, and the caller goes upstream's way.

    Args:
        response: An ``httpx`` or ``httpx2`` response whose body was read.

    Returns:
        The parsed value (dicts, lists, str, int, float, bool, None), or :data:`NOT_PARSED`.
        Never raises.
    """
    try:
        attributes = vars(response)
        if "_text" in attributes:  # the text exists already: upstream's way costs nothing more
            return NOT_PARSED
        encoding = attributes.get("_encoding")
        if encoding is None:
            content_type = response.headers.get("content-type")
            if (content_type is not None and ";" in content_type) or response.default_encoding not in _UTF8_NAMES:
                return NOT_PARSED
        elif encoding not in _UTF8_NAMES:
            return NOT_PARSED
        return from_json(response.content)
    except Exception:  # noqa: BLE001 - upstream's way decides what this body gives
        return NOT_PARSED


_LIBRARIES: Dict[type, Any] = {}
_PARSED_URLS: Dict[Tuple[type, str], Any] = {}


def _own_library(client: Any) -> Any:
    """The HTTP library module (:func:`release.http_library`: httpx or httpx2) whose ``Client`` or
    ``AsyncClient`` is exactly ``client``'s class, else None; per class."""
    client_type = type(client)
    try:
        return _LIBRARIES[client_type]
    except KeyError:
        pass
    from .release import http_library  # not at import: models alone need none of it

    try:
        library = http_library(client)
    except TypeError:  # not a class of httpx or httpx2
        library = None
    if library is not None and client_type not in (library.Client, library.AsyncClient):
        library = None
    _store(_LIBRARIES, client_type, library)
    return library


def parsed_url(client: Any, url: str) -> Any:
    """``url`` parsed into a ``URL`` of ``client``'s HTTP library, once per string, for
    ``client.build_request``.

    Upstream passes the request's URL as a string, which the client parses on every request
    (``Client._merge_url``); given a ``URL``, it takes it as is (httpx's ``URL(URL)`` shares the
    parsed form, ``URL`` has no mutating method), so the request gets an equal URL without the
    parse: about 14 µs less per request.

    Args:
        client: The SDK's HTTP client. Only httpx's and httpx2's own ``Client`` and
            ``AsyncClient`` (exact classes) get a ``URL``; any other client (a subclass, a client
            of one's own implementing the SDK's ``HttpClient`` protocol) gets ``url`` unchanged.
        url: The absolute URL upstream would pass.

    Returns:
        A ``URL`` equal to ``URL(url)``, or ``url``. At most :data:`MAX_ENTRIES` URLs are kept
        (the table is emptied when full).

    Raises:
        The library's ``InvalidURL`` for a URL it cannot parse, as its ``build_request`` would
        (nothing is cached then).
    """
    library = _own_library(client)
    if library is None:
        return url
    url_class = library.URL
    key = (url_class, url)
    parsed = _PARSED_URLS.get(key)
    if parsed is None:
        parsed = url_class(url)
        _store(_PARSED_URLS, key, parsed)
    return parsed


_BUILDS_VERIFIED: Dict[type, bool] = {}


def _merged_headers(library: Any, client: Any, headers: Any) -> Any:
    """The ``Headers`` that ``client.build_request(..., headers=headers)`` sends (the client's
    headers, each one ``headers`` names removed, then ``headers``), in one pass: the library's
    ``Headers.update`` looks every name up and removes it with two more scans of the list. Only
    for names that are ASCII (its lookups re-encode a name with the list's encoding: the same
    bytes then); else None."""
    ours = library.Headers(headers)
    names = set()
    for _, name, _ in ours._list:
        if not name.isascii():
            return None
        names.add(name)
    merged = library.Headers()
    merged._list = [item for item in client.headers._list if item[1] not in names]
    merged._list.extend(ours._list)
    return merged


_SECURITY: Dict[Tuple[type, Optional[Tuple[str, ...]], Any], Tuple[Any, Any, Any]] = {}


def security_parts(
    get_security: Callable[..., Any], security: Any, allowed_fields: Optional[List[str]]
) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """``get_security(security, allowed_fields)`` (upstream's ``utils.get_security``: the headers
    and query parameters of the client's security settings), worked out again only when the
    settings change.

    Upstream walks the security model's fields and their metadata on every request. What it gives
    depends on the model's class and field values only (``utils/security.py`` is fingerprinted
    in ``gen.lock``, ``relies_on`` in gen.yaml), so for a model whose fields all hold strings or
    None the last result per class is kept with those values and handed out as fresh copies
    while they are the same; a key that changes replaces it (no old key is kept). Any other model
    is worked out every time.

    Returns:
        ``(headers, query_params)``: new dicts (and lists) on every call, as upstream's.

    Raises:
        What ``get_security`` raises (nothing is kept then).
    """
    values = getattr(security, "__dict__", None)
    if type(values) is not dict or not isinstance(security, pydantic.BaseModel):
        return get_security(security, allowed_fields)
    state = tuple(values.items())
    for _, value in state:
        if value is not None and type(value) is not str:
            return get_security(security, allowed_fields)
    key = (type(security), None if allowed_fields is None else tuple(allowed_fields), get_security)
    kept = _SECURITY.get(key)
    if kept is None or kept[0] != state:
        headers, query_params = get_security(security, allowed_fields)
        kept = (state, dict(headers), {name: list(v) for name, v in query_params.items()})
        _store(_SECURITY, key, kept)
    return dict(kept[1]), {name: list(v) for name, v in kept[2].items()}


def build_request(
    client: Any,
    method: str,
    url: Any,
    *,
    params: Any,
    content: Any,
    data: Any,
    files: Any,
    headers: Any,
    timeout: Any,
) -> Any:
    """``client.build_request(method, url, params=..., content=..., data=..., files=...,
    headers=..., timeout=...)``, as upstream's ``_build_request_with_client`` calls it, with the
    headers merged in one pass (:func:`_merged_headers`): the client's default headers and the
    SDK's (``Accept``, ``user-agent``, ``Authorization``, ``content-type``) collide, and the
    library merges them one name at a time (a few µs of client CPU per call on loopback).

    Only for httpx's and httpx2's own ``Client`` and ``AsyncClient`` (exact classes), and only
    once the client's class has built one request both ways with the same method, URL, headers,
    extensions and body (checked on its first call with a body that is bytes, a string or
    nothing: a multipart boundary is random): so a release of the library whose
    ``build_request`` does something else keeps its own. Every other client, and any call whose
    header names are not all ASCII, goes to ``client.build_request``.

    Args:
        client: The SDK's HTTP client.
        method, url, params, content, data, files, headers, timeout: As for the library's
            ``build_request`` (``timeout`` in seconds, or its ``USE_CLIENT_DEFAULT``).

    Returns:
        The library's ``Request``.

    Raises:
        Whatever ``client.build_request`` raises for these arguments (the call is made there
        whenever building here fails).
    """
    cls = type(client)
    verified = _BUILDS_VERIFIED.get(cls)
    library = _own_library(client) if verified is not False else None
    candidate = None
    plain_body = data is None and files is None and isinstance(content, (bytes, str, type(None)))
    if library is not None and (verified or plain_body):
        try:
            merged = _merged_headers(library, client, headers)
            if merged is not None:
                if isinstance(timeout, type(library.USE_CLIENT_DEFAULT)):
                    timeouts = client.timeout
                else:
                    timeouts = library.Timeout(timeout)
                candidate = library.Request(
                    method,
                    client._merge_url(url),
                    content=content,
                    data=data,
                    files=files,
                    json=None,
                    params=client._merge_queryparams(params),
                    headers=merged,
                    cookies=client._merge_cookies(None),
                    extensions={"timeout": timeouts.as_dict()},
                )
                if verified:
                    return candidate
        except Exception:  # noqa: BLE001 - the library's own build decides what these arguments give
            candidate = None
    request = client.build_request(
        method, url, params=params, content=content, data=data, files=files, headers=headers, timeout=timeout
    )
    if candidate is not None:  # the class's first plain-body call: is the one-pass build the same?
        try:
            same = (
                candidate.method == request.method
                and candidate.url == request.url
                and candidate.headers.raw == request.headers.raw
                and candidate.extensions == request.extensions
                and candidate.content == request.content
            )
        except Exception:  # noqa: BLE001 - what cannot be compared is not the same
            same = False
        _store(_BUILDS_VERIFIED, cls, same)
    return request


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


def _field_discriminator(field: Any, fieldname: str, upper_fieldname: str, key: str) -> Optional[str]:
    # Upstream's get_discriminator.<locals>.get_field_discriminator, the names passed in.
    if isinstance(field, dict):
        if key in field:
            return f"{field[key]}"
    for name in (fieldname, upper_fieldname):  # upstream's two twin branches, in its order
        if hasattr(field, name):
            attr = getattr(field, name)
            if isinstance(attr, enum.Enum):
                return f"{attr.value}"
            return f"{attr}"
    return None


def _nested_discriminator(obj: Any, fieldname: str, upper_fieldname: str, key: str) -> Optional[str]:
    # Upstream's get_discriminator.<locals>.search_nested_discriminator, the names passed in.
    discriminator = _field_discriminator(obj, fieldname, upper_fieldname, key)
    if discriminator is not None:
        return discriminator
    if isinstance(obj, dict):
        for value in obj.values():
            if isinstance(value, list):
                for item in value:
                    nested = _nested_discriminator(item, fieldname, upper_fieldname, key)
                    if nested is not None:
                        return nested
            elif isinstance(value, dict):
                nested = _nested_discriminator(value, fieldname, upper_fieldname, key)
                if nested is not None:
                    return nested
    return None


def find_discriminator(model: Any, fieldname: str, key: str) -> Optional[str]:
    """The discriminator value upstream's ``get_discriminator`` (``utils/annotations.py``) finds
    in ``model`` (a dict, a model instance, or a list of them), or None where upstream raises
    ``ValueError``; the same search in the same order, with the same string results.

    Upstream defines its two search functions inside ``get_discriminator`` on every call; they
    refer to each other and to themselves through closure cells, so every call leaves a reference
    cycle of 11 objects that only the garbage collector frees. pydantic calls it for every value of
    a discriminated union, on validation and on serialization (33 such objects per chat request).
    Here the functions are module-level and take the names as arguments: no cycle.

    Args:
        model: The value pydantic passes to the union's discriminator callable.
        fieldname: The discriminator attribute name (e.g. ``"role"``); its upper-case form is
            tried as well, as upstream does.
        key: The discriminator key in a dict.

    Raises:
        Whatever the value's attribute access raises, and ``RecursionError`` for a nesting
        deeper than the recursion limit, as upstream.
    """
    upper_fieldname = fieldname.upper()
    if isinstance(model, list):
        for field in model:
            discriminator = _nested_discriminator(field, fieldname, upper_fieldname, key)
            if discriminator is not None:
                return discriminator
    return _nested_discriminator(model, fieldname, upper_fieldname, key)


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


def contains_model(data: Any, model_class: type) -> bool:
    """Upstream's ``_contains_pydantic_model`` (``utils/serializers.py``): whether ``data`` is an
    instance of ``model_class`` (the target's ``BaseModel``) or a list or dict (subclasses
    included) holding one at any depth, lists' items and dicts' values searched in order.

    Upstream tests ``isinstance(data, typing.List)`` and ``typing.Dict``, which mean ``list`` and
    ``dict`` but go through typing's and abc's ``__instancecheck__`` at every level (about 2 µs
    for a chat message list); the builtin checks here give the same answer.

    Raises:
        ``RecursionError`` for a nesting deeper than the recursion limit, as upstream.
    """
    if type(data) in _JSON_SCALARS:  # never a model, a list or a dict
        return False
    if isinstance(data, model_class):
        return True
    if isinstance(data, list):
        return any(contains_model(item, model_class) for item in data)
    if isinstance(data, dict):
        return any(contains_model(value, model_class) for value in data.values())
    return False


_DUMP_CHECKED: Dict[Tuple[type, Tuple[str, ...]], bool] = {}


def _dump_keys(cls: type) -> Dict[str, str]:
    """Field name → the key a by-alias dump gives it (the alias, else the name), per class."""
    keys = _BY_IDENTITY.get("dump keys", cls)
    if keys is None:
        keys = {name: field.alias or name for name, field in cls.model_fields.items()}  # type: ignore[attr-defined]
        _BY_IDENTITY.put("dump keys", cls, keys)
    return keys


def dump_model(model: Any, unset_class: type) -> Any:
    """``model.model_dump(by_alias=True, mode="json", exclude_none=True)``, as ``marshal_json``
    dumps a request body, without serializing the fields whose value is an ``unset_class``
    instance (``UNSET``) where that gives the same dump.

    Generated methods build request models with every optional argument, most of them ``UNSET``
    (22 of 28 for a chat completion). The generated wrap serializer (``serialize_model``) drops a
    field that serializes to the ``UNSET`` sentinel; to get there, pydantic-core tries each member
    of the field's ``OptionalNullable`` union before ``Unset`` (about 0.5 µs per field). Here such
    fields are excluded from the dump and their keys removed from the result: excluded, a field
    comes to ``serialize_model`` as absent, which it may turn into ``None``, never into a value of
    its own.

    A class is trusted for a set of ``UNSET`` fields only after its first such dump has been
    made both ways and found to give the same JSON text: a class whose serializer keeps the
    sentinel, or does anything else with it, gets upstream's dump every time. At most
    :data:`MAX_ENTRIES` verdicts are kept (the table is emptied when full).

    Returns:
        What ``model.model_dump(by_alias=True, mode="json", exclude_none=True)`` returns.

    Raises:
        What that dump raises (``PydanticSerializationError``...): any failure of the shorter
        dump falls back to it.
    """
    unset = tuple([name for name, value in model.__dict__.items() if type(value) is unset_class])
    key = (type(model), unset)
    verdict = _DUMP_CHECKED.get(key) if unset else False
    if verdict is False:
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    try:
        dumped = model.model_dump(by_alias=True, mode="json", exclude_none=True, exclude=set(unset))
        keys = _dump_keys(type(model))
        for name in unset:
            dumped.pop(keys[name], None)
    except Exception:  # noqa: BLE001 - upstream's dump decides what this model gives
        dumped = None
    if verdict is True and dumped is not None:
        return dumped
    full = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    if verdict is None:
        _store(_DUMP_CHECKED, key, _same_json(full, dumped))
    return full


def _same_json(a: Any, b: Any) -> bool:
    """Whether two dumps give the same JSON text, as ``marshal_json`` writes it."""
    try:
        if type(a) is not dict or type(b) is not dict:
            return False
        return json.dumps(a, separators=(",", ":")) == json.dumps(b, separators=(",", ":"))
    except Exception:  # noqa: BLE001 - what cannot be compared is not the same
        return False


class EventJSON(str):
    """The JSON text of one server-sent event, as upstream's decoder gets it, with its value.

    A ``str`` (``{"event": ..., "data": ...}``, the keys upstream's ``_parse_event`` gives, in its
    order) that parses to ``value``; ``utils.unmarshal_json`` of the SDK takes ``value`` instead
    of parsing the text again. The text is compact JSON, not ``json.dumps``' spacing: a decoder of
    one's own gets equal JSON, not equal characters.
    """

    value: Dict[str, Any]


# One event of the common shape: an optional `event:` line, then one `data:` line, LF only.
# Upstream strips one space after the colon, which the optional space here does too.
_COMMON_EVENT = re.compile(rb"(?:event:[ ]?([^\r\n]*)\n)?data:[ ]?([^\r\n]*)")


@functools.lru_cache(maxsize=256)
def _json_string(value: str) -> str:
    return json.dumps(value)


def parse_event(
    raw: bytearray,
    decoder: Callable[[str], Any],
    sentinel: Optional[str],
    event_id: Optional[str],
    data_required: bool,
    slow: Callable[..., Tuple[Any, bool, Optional[str]]],
) -> Tuple[Any, bool, Optional[str]]:
    """Upstream's ``_parse_event`` (``utils/eventstreaming.py``) for one SSE block, faster.

    Args:
        raw: The block's bytes, between two message boundaries.
        decoder: Turns the event's JSON text into the value the stream yields (the SDK's
            ``lambda raw: unmarshal_json_response(Type, http_res, raw)``).
        sentinel: The data that ends the stream (``"[DONE]"``) or None.
        event_id: The last event id seen (SSE ids carry over to later events).
        data_required: Whether an event without data is skipped (upstream's argument).
        slow: Upstream's ``_parse_event`` of the same target, called with the same keywords.

    Returns:
        ``(value or None, stream ends, event id)``, as ``slow`` returns them.

    Raises:
        Whatever ``slow`` raises: a block of any other shape (comments, ``id:``/``retry:``
        fields, several data lines, CR line ends), data that is not JSON by pydantic-core's
        parser (also bytes that are not UTF-8), and any error of the decoder send the block to
        ``slow``, so its result or exception is upstream's (the decoder then runs twice).
    """
    match = _COMMON_EVENT.fullmatch(raw)
    if match is None:
        return slow(raw=raw, decoder=decoder, sentinel=sentinel, event_id=event_id, data_required=data_required)
    name, data = match.groups()
    try:
        text = data.decode()
        if sentinel and text == sentinel:
            return None, True, event_id
        value: Dict[str, Any] = {}
        head = "{"
        if event_id is not None:
            value["id"] = event_id
            head += '"id":' + _json_string(event_id) + ","
        if name is not None:
            value["event"] = event = name.decode()
            head += '"event":' + _json_string(event) + ","
        value["data"] = from_json(data)
        event_json = EventJSON(head + '"data":' + text + "}")
        event_json.value = value
        return decoder(event_json), False, event_id
    except Exception:  # noqa: BLE001 - upstream's parse decides what this block gives
        return slow(raw=raw, decoder=decoder, sentinel=sentinel, event_id=event_id, data_required=data_required)


def cache_info() -> Dict[str, Dict[str, int]]:
    """Entries, hits, misses and uncacheable lookups of each cache (for benchmarks and tests)."""
    return {"models": _MODELS.info(), "type_hints": _HINTS.info()}


def clear() -> None:
    """Empty every cache (tests, or after redefining classes at runtime)."""
    _MODELS.clear()
    _BY_IDENTITY.clear()
    _HINTS.clear()
    _SELF_VALIDATING.clear()
    _LIBRARIES.clear()
    _BUILDS_VERIFIED.clear()
    _PARSED_URLS.clear()
    _DUMP_CHECKED.clear()
    _SECURITY.clear()
    from . import bodyjson  # imports this module

    bodyjson.clear()
