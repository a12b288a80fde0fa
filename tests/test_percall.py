"""Per-call work the fork leaves out (issue 13), on every target: debug messages the default
logger drops are not built (their body argument is the repr of the whole request body), and a
logger of one's own still gets every message upstream sends it, with the body; and the rest of
the per-call cuts (URLs parsed once, headers merged in one pass, security settings worked out
when they change)."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pydantic
import pytest

from conftest import MESSAGES, TARGETS, httpx
from mistralai_patched import fastpath
from mistralai_patched.harness import make_sdk, target_module
from mistralai_patched.loopback import completion_reply

COMPLETION = b"".join(completion_reply().chunks)


def _answer(request: Any) -> Any:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=COMPLETION)


def _call(target: str, asynchronous: bool, logger: Any = None) -> None:
    transport = httpx.MockTransport(_answer)
    if asynchronous:
        sdk = make_sdk(target, "http://loopback", async_client=httpx.AsyncClient(transport=transport))
    else:
        sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=transport))
    if logger is not None:
        sdk.sdk_configuration.debug_logger = logger  # what Mistral(debug_logger=...) sets
    if asynchronous:
        asyncio.run(sdk.chat.complete_async(model="m", messages=MESSAGES))
    else:
        sdk.chat.complete(model="m", messages=MESSAGES)


@pytest.mark.bites
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("target", TARGETS)
def test_the_default_logger_gets_no_request_body_built(target: str, asynchronous: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    basesdk = importlib.import_module(target_module(target) + ".basesdk")
    built: List[Any] = []
    monkeypatch.setattr(basesdk, "get_body_content", lambda request: built.append(request) or "")
    _call(target, asynchronous)
    assert built == []


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("target", TARGETS)
def test_a_logger_of_ones_own_gets_the_request_and_response(target: str, asynchronous: bool,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(f"test_percall.{target}")
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        _call(target, asynchronous, logger)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Request:\nMethod: POST" in text and '"content":"hi"' in text  # with the body sent
    assert "Response:\nStatus Code: 200" in text and "cmpl-loopback" in text  # with the body read


_HTTP_PACKAGES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11", "h2"})


def _left_in_cycles(call: Any, calls: int) -> List[str]:
    """The types of the objects ``calls`` runs of ``call()`` leave in reference cycles (found by
    the garbage collector, off meanwhile), but for the cycles of the HTTP library's own objects."""
    import gc

    call()  # imports, model classes and caches: built once, kept
    gc.collect()
    gc.disable()
    try:
        for _ in range(calls):
            call()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        del gc.garbage[:]
        gc.enable()
    in_garbage = {id(o) for o in garbage}
    stack = [o for o in garbage if type(o).__module__.split(".")[0] in _HTTP_PACKAGES]
    library: set = set()
    while stack:  # everything reachable from the library's objects within the garbage is theirs
        obj = stack.pop()
        if id(obj) not in library:
            library.add(id(obj))
            stack.extend(r for r in gc.get_referents(obj) if id(r) in in_garbage)
    return sorted(type(o).__qualname__ for o in garbage if id(o) not in library)


def _cycles_of(target: str, calls: int) -> Dict[str, List[str]]:
    """:func:`_left_in_cycles` of chat calls of ``target``, sync and async."""
    transport = httpx.MockTransport(_answer)
    client_sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=transport))
    async_sdk = make_sdk(target, "http://loopback", async_client=httpx.AsyncClient(transport=transport))
    loop = asyncio.new_event_loop()
    try:
        return {
            f"{target}-sync": _left_in_cycles(lambda: client_sdk.chat.complete(model="m", messages=MESSAGES), calls),
            f"{target}-async": _left_in_cycles(
                lambda: loop.run_until_complete(async_sdk.chat.complete_async(model="m", messages=MESSAGES)), calls),
        }
    finally:
        loop.close()


def _print_cycles(targets: List[str], calls: int = 10) -> None:
    """Run in a fresh interpreter by :func:`left_in_cycles`: per target, sync and async, what ten
    chat calls leave in reference cycles, as JSON on stdout."""
    found: Dict[str, List[str]] = {}
    for target in targets:
        found.update(_cycles_of(target, calls))
    print(json.dumps(found))


@pytest.fixture(scope="module")
def left_in_cycles() -> Dict[str, List[str]]:
    """Per ``<target>-sync`` and ``<target>-async``: the types of the objects ten chat calls left in
    reference cycles (found by the garbage collector, off meanwhile), in a fresh interpreter so
    that no other test's garbage is counted; the cycles of the HTTP library's own objects are not
    counted: httpx (2.x line) binds every response and its byte stream to each other, so each call
    leaves one there, raw httpx alike (httpx2 does not)."""
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [tests, os.environ.get("PYTHONPATH")] if p))
    proc = subprocess.run([sys.executable, "-c", "import sys, test_percall; test_percall._print_cycles(sys.argv[1:])",
                           *TARGETS], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.bites
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("target", TARGETS)
def test_a_call_leaves_no_garbage_cycles(target: str, asynchronous: bool, left_in_cycles: Dict[str, List[str]]) -> None:
    """A call's objects are freed when it returns, by reference counting: none of the SDK's is
    left in a reference cycle for the garbage collector. Upstream's ``get_discriminator``, which
    pydantic calls for every value of a discriminated union (the messages of a chat request),
    left a cycle of 11 objects per search, three searches per chat call."""
    left = left_in_cycles[f"{target}-{'async' if asynchronous else 'sync'}"]
    assert left == [], f"{len(left)} objects in reference cycles after 10 calls: {sorted(set(left))}"


def _count_parses(monkeypatch: pytest.MonkeyPatch, library: Any) -> List[str]:
    """Every URL string the library parses into a ``URL`` from now on."""
    parsed: List[str] = []
    init = library.URL.__init__

    def counting(self: Any, url: Any = "", **kwargs: Any) -> None:
        if isinstance(url, str):
            parsed.append(url)
        init(self, url, **kwargs)

    monkeypatch.setattr(library.URL, "__init__", counting)
    return parsed


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_a_request_url_is_parsed_once_per_string(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's own clients get the request URL parsed (``fastpath.parsed_url``): the same
    operation again parses no URL string; upstream passed the string, parsed on every request.
    The request's URL is the same."""
    seen: List[str] = []

    def answer(request: Any) -> Any:
        seen.append(str(request.url))
        return _answer(request)

    sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=httpx.MockTransport(answer)))
    sdk.chat.complete(model="m", messages=MESSAGES)
    parsed = _count_parses(monkeypatch, httpx)
    for _ in range(3):
        sdk.chat.complete(model="m", messages=MESSAGES)
    assert parsed == []
    assert len(set(seen)) == 1 and seen[0].startswith("http://loopback/")


def test_other_clients_get_the_url_string(library: Any) -> None:
    """A subclass of the library's client (which may override ``build_request``), or a client of
    one's own, gets the string upstream passes; an unparsable URL raises the library's own error
    and is not remembered."""
    from mistralai_patched import fastpath

    class Subclass(library.Client):
        pass

    url = "http://loopback/v1/chat/completions"
    assert fastpath.parsed_url(Subclass(), url) is url
    assert fastpath.parsed_url(object(), url) is url
    for client in (library.Client(), library.AsyncClient()):
        parsed = fastpath.parsed_url(client, url)
        assert type(parsed) is library.URL and parsed == library.URL(url)
        assert fastpath.parsed_url(client, url) is parsed
    with pytest.raises(library.InvalidURL) as raised:
        fastpath.parsed_url(library.Client(), "http://example.com:abc/")
    with pytest.raises(library.InvalidURL) as expected:
        library.URL("http://example.com:abc/")
    assert str(raised.value) == str(expected.value)
    assert "http://example.com:abc/" not in {url for _, url in fastpath._PARSED_URLS}


def test_parsed_urls_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mistralai_patched import fastpath

    monkeypatch.setattr(fastpath, "MAX_ENTRIES", 4)
    client = httpx.Client()
    for i in range(10):
        fastpath.parsed_url(client, f"http://loopback/v1/files/{i}")
    assert len(fastpath._PARSED_URLS) <= 4


def _built(request: Any) -> Any:
    return (request.method, request.url, request.headers.raw, request.extensions, request.read())


def _outcome(build: Any, *args: Any, **kwargs: Any) -> Any:
    """What a build gives: the request's parts, or the error's type and message."""
    try:
        return _built(build(*args, **kwargs))
    except Exception as error:  # noqa: BLE001 - compared by the caller
        return type(error), str(error)


_SDK_HEADERS = {"Accept": "application/json", "user-agent": "mistral-client-python/0", "Authorization": "Bearer k",
                "content-type": "application/json"}


@pytest.mark.parametrize("kind", ["Client", "AsyncClient"])
def test_requests_are_built_as_the_client_builds_them(library: Any, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fastpath.build_request`` merges the headers in one pass: the request is the one the
    client's own ``build_request`` gives (method, URL, headers in order, extensions, body), for
    clients with headers, cookies, query parameters and a base URL of their own, for bodies of
    every kind and for header names in any case (and the same error where it refuses them: a
    relative URL without a base URL)."""
    from mistralai_patched import fastpath

    monkeypatch.setattr(os, "urandom", lambda n: b"\x01" * n)  # one multipart boundary for both builds
    cls = getattr(library, kind)
    clients = [
        cls(),
        cls(headers={"User-Agent": "app/1", "X-Trace": "a", "ACCEPT": "*/*"}, cookies={"session": "s"},
            params={"api-version": "1"}, timeout=7.5),
        cls(base_url="http://loopback/prefix", headers=[("x-dup", "1"), ("X-Dup", "2")]),
    ]
    headers_cases = [_SDK_HEADERS, {"ACCEPT": "text/plain", "X-Dup": "3", "x-trace": "b"}, {}, {"Accept": "application/json"}]
    bodies: List[Dict[str, Any]] = [
        {"content": b'{"model":"m"}'}, {"content": '{"model":"é"}'}, {"content": None},
        {"data": {"purpose": "batch"}}, {"files": {"file": ("a.jsonl", b"{}\n")}, "data": {"purpose": "batch"}},
    ]
    for client in clients:
        for url in ("http://loopback/v1/chat/completions", library.URL("http://loopback/v1/files?x=1"), "/v1/models"):
            for headers in headers_cases:
                for body in bodies:
                    for params, timeout in ((None, library.USE_CLIENT_DEFAULT), ({"page": "2"}, 3.0)):
                        arguments = dict(params=params, content=body.get("content"), data=body.get("data"),
                                         files=body.get("files"), headers=dict(headers), timeout=timeout)
                        assert _outcome(fastpath.build_request, client, "POST", url, **arguments) == \
                            _outcome(client.build_request, "POST", url, **arguments), (url, headers, body, params)
    assert fastpath._BUILDS_VERIFIED[cls] is True


def test_other_clients_and_names_build_as_the_client_does(library: Any) -> None:
    """A subclass (which may override ``build_request``) is asked to build; header names that are
    not ASCII, or that the library refuses, give what the client's own build gives."""
    from mistralai_patched import fastpath

    calls: List[Any] = []

    class Subclass(library.Client):
        def build_request(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return super().build_request(*args, **kwargs)

    arguments = dict(params=None, content=b"{}", data=None, files=None, headers=dict(_SDK_HEADERS),
                     timeout=library.USE_CLIENT_DEFAULT)
    fastpath.build_request(Subclass(), "POST", "http://loopback/v1/models", **arguments)
    assert len(calls) == 1
    client = library.Client()
    fastpath.build_request(client, "POST", "http://loopback/v1/models", **arguments)  # verified here
    for headers in ({"x-ünï": "v"}, {"Accept": "v", b"x-\xff": b"v"}, {"bad name\n": "v"}, {"Accept": 1}, {"Accept": "é"}):
        given = {**arguments, "headers": headers}
        assert _outcome(fastpath.build_request, client, "POST", "http://loopback/v1/models", **given) == \
            _outcome(client.build_request, "POST", "http://loopback/v1/models", **given), headers


def test_a_library_that_builds_otherwise_keeps_its_own_build(library: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the library's ``build_request`` (a later release, say) gives another request than
    the one-pass merge, the class's first call sees it and every call is the library's."""
    from mistralai_patched import fastpath

    original = library.Client.build_request

    def adds_a_header(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(self, *args, **kwargs)
        request.headers["x-new"] = "1"
        return request

    monkeypatch.setattr(library.Client, "build_request", adds_a_header)
    monkeypatch.setattr(fastpath, "_BUILDS_VERIFIED", {})
    client = library.Client()
    arguments = dict(params=None, content=b"{}", data=None, files=None, headers=dict(_SDK_HEADERS),
                     timeout=library.USE_CLIENT_DEFAULT)
    for _ in range(3):
        assert fastpath.build_request(client, "POST", "http://loopback/v1/models", **arguments).headers["x-new"] == "1"
    assert fastpath._BUILDS_VERIFIED[library.Client] is False


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_the_sdks_headers_are_merged_in_one_pass(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first call, httpx's own client gets the SDK's headers merged with its own in one
    pass: no ``Headers.update`` (a lookup and removal per name). The requests sent are the same."""
    sent: List[Any] = []

    def answer(request: Any) -> Any:
        sent.append(request.headers.raw)
        return _answer(request)

    sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=httpx.MockTransport(answer)))
    sdk.chat.complete(model="m", messages=MESSAGES)
    updates: List[Any] = []
    update = httpx.Headers.update
    monkeypatch.setattr(httpx.Headers, "update", lambda self, *a, **k: updates.append(a) or update(self, *a, **k))
    for _ in range(3):
        sdk.chat.complete(model="m", messages=MESSAGES)
    assert updates == []
    assert all(raw == sent[0] for raw in sent)


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_security_settings_are_worked_out_when_they_change(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream walks the security model's fields and metadata on every request; they are worked
    out again only when the settings change (a new API key is sent from the next call on)."""
    utils = importlib.import_module(target_module(target) + ".utils")
    walks: List[Any] = []
    get_security = utils.get_security
    monkeypatch.setattr(utils, "get_security", lambda *a: walks.append(a) or get_security(*a))
    sent: List[str] = []

    def answer(request: Any) -> Any:
        sent.append(request.headers.get("authorization") or request.headers.get("api-key") or "")
        return _answer(request)

    sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=httpx.MockTransport(answer)))
    for _ in range(3):
        sdk.chat.complete(model="m", messages=MESSAGES)
    security_class = importlib.import_module(target_module(target) + ".models").Security
    field = next(iter(security_class.model_fields))
    sdk.sdk_configuration.security = security_class(**{field: "rotated"})  # a new key
    for _ in range(2):
        sdk.chat.complete(model="m", messages=MESSAGES)
    assert len(walks) == 2
    assert len(set(sent[:3])) == 1 and sent[3:] == [sent[3]] * 2 and "rotated" in sent[3] and sent[3] != sent[0]


def test_security_parts_are_upstreams_and_fresh() -> None:
    """Fresh dicts and lists every time; a changed value is worked out again and replaces the
    kept result (no old key is kept); a model holding anything but strings is worked out every
    time; errors pass through."""
    from mistralai.client import models, utils

    fastpath.clear()
    calls: List[Any] = []

    def get_security(security: Any, allowed: Any) -> Any:
        calls.append(security.api_key)
        return utils.get_security(security, allowed)

    key = models.Security(api_key="k1")
    first = fastpath.security_parts(get_security, key, None)
    second = fastpath.security_parts(get_security, key, None)
    assert first == second == utils.get_security(key, None) and first[0] is not second[0]
    first[0]["Authorization"] = "tampered"
    assert fastpath.security_parts(get_security, key, None)[0]["Authorization"] == "Bearer k1"
    key.api_key = "k2"
    assert fastpath.security_parts(get_security, key, None)[0]["Authorization"] == "Bearer k2"
    assert calls == ["k1", "k2"] and len(fastpath._SECURITY) == 1
    assert all("k1" not in repr(kept) for kept in fastpath._SECURITY.values())

    class Odd(pydantic.BaseModel):
        api_key: Any

    odd = Odd(api_key=["not", "a", "string"])
    seen: List[Any] = []
    fastpath.security_parts(lambda s, a: seen.append(s) or ({}, {}), odd, None)
    fastpath.security_parts(lambda s, a: seen.append(s) or ({}, {}), odd, None)
    assert len(seen) == 2

    def failing(security: Any, allowed: Any) -> Any:
        raise TypeError("security must be a pydantic model")

    with pytest.raises(TypeError):
        fastpath.security_parts(failing, models.Security(api_key="k3"), None)
