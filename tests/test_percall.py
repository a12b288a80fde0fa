"""Per-call work the fork leaves out (issue 13), on every target: debug messages the default
logger drops are not built (their body argument is the repr of the whole request body), and a
logger of one's own still gets every message upstream sends it, with the body."""

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

import pytest

from conftest import MESSAGES, TARGETS, httpx
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
