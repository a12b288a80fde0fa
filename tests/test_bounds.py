"""Every call ends within its time budget and holds bounded memory, whatever the server does:
stalled bodies we discard, error bodies and unexpected bodies that trickle, compressed bodies,
success bodies without end, streams dropped without being closed; healthy slow answers are not
cut.

Real loopback server, real connection pool (``SharedClient``). Time bounds are asserted with a
wide margin against a stall of 5 s or more: a healthy build ends in about a quarter of a second,
the fork before these fixes waited the stall out. Memory is measured with ``tracemalloc`` (it sees
the bytes objects zlib returns), peak during the call.

Which tests bite: those where pristine upstream fails too (a stream dropped unclosed keeps its
connection checked out; a compressed final error body is decoded in full; a trickling error body
or a trickling non-event-stream answer to a stream is read to its end, however long it takes; a
``complete`` answer over ``SUCCESS_MAX_BYTES`` is read and decoded whole). The stalled-drain
and compressed-retried-body cases guard the fork's own drains: upstream closes retried responses
unread on 3.x (it leaks them on 2.x's azure/gcp instead), so they are regression tests of ours.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import itertools
import time
import tracemalloc
import warnings
import zlib
from typing import Any, Callable

import pytest

from conftest import MESSAGES, TARGETS, SharedClient
from mistralai_patched.harness import retry_config, target_module
from mistralai_patched import line_library, release
from mistralai_patched.bounds import (
    ERROR_TEXT, EVENT_START, GZIP_WBITS, HTML_PAGE, TIMEOUT_MS, bomb_reply, coded, compressed, endless_event_reply,
    first_then as _first_then, gzip_gzip_reply, huge_completion_reply, slow_healthy_reply, stalled_retry_reply,
    tail_stall_reply, trickle_reply,
)
from mistralai_patched.loopback import LoopbackServer, Reply, completion_reply, sse_reply

MODES = [pytest.param(True, id="sync"), pytest.param(False, id="async")]
MIB = 1024 * 1024
BOMB_CODINGS = ["gzip, gzip", "br", "zstd"]
"""Content codings of the compressed bombs: each HTTP library decodes all three here (brotli and
backports.zstd or zstandard are test requirements, so httpx and httpx2 offer br and zstd)."""


def _call(server: LoopbackServer, sync: bool, target: str = "mistral", stream: bool = True, **kwargs: Any) -> Any:
    """One call (streamed unless ``stream=False``) on a fresh shared client; returns
    (CallResult, tally, seconds)."""
    started = time.monotonic()
    shared = SharedClient(target, server.url, sync=sync, pool=2, **kwargs)
    if sync:
        with shared:
            result = shared.call(stream)
            tally = shared.tally()
    else:

        async def run() -> Any:
            async with shared:
                return await shared.call_async(stream), shared.tally()

        result, tally = asyncio.run(run())
    return result, tally, time.monotonic() - started


# ---------------------------------------------------------------- a discarded body that stalls


@pytest.mark.parametrize("sync", MODES)
def test_retried_response_whose_body_stalls_costs_one_drain_budget(sync: bool) -> None:
    """The first answer is a 429 whose body stops half-way for 6 s; the retry succeeds. The
    drain gives up after its budget (250 ms), not after the 5 s read timeout."""
    with LoopbackServer(respond=_first_then(stalled_retry_reply(), sse_reply(2))) as server:
        result, tally, seconds = _call(server, sync, retries=retry_config("mistral", max_elapsed_ms=5000),
                                       timeout_ms=5000)
    assert result.error is None and result.events == 2, result.error
    assert seconds < 2.0, f"the retried body's drain took {seconds:.1f} s"
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize("sync", MODES)
def test_stream_whose_tail_stalls_after_done_ends_at_once(sync: bool) -> None:
    """The events and ``[DONE]`` arrive, then the body stalls for 6 s: the caller's loop ends
    within the drain budget (the fork waited for the read timeout, 5 s)."""
    with LoopbackServer(tail_stall_reply()) as server:
        result, tally, seconds = _call(server, sync, timeout_ms=5000)
    assert result.error is None and result.events == 2, result.error
    assert seconds < 2.0, f"the stream ended {seconds:.1f} s after its start"
    assert tally.responses_left_open == 0 and tally.in_use == 0


# --------------------------------------------------- bodies the caller sees only in an error

def _errors_of(target: str) -> Any:
    return importlib.import_module(target_module(target) + ".errors")


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("stream", [pytest.param(False, id="complete"), pytest.param(True, id="stream")])
@pytest.mark.parametrize("target", TARGETS)
def test_trickling_error_body_ends_within_timeout_ms(target: str, stream: bool, sync: bool) -> None:
    """A 500 whose body comes one byte per 100 ms (6 s in all): the call ends within
    ``timeout_ms`` (1.5 s) plus the drain budget, with an SDKError carrying the bytes received and
    a note that the body is incomplete. Upstream reads a non-streamed body inside ``send``, where
    only the per-read timeout applies: it waits all 6 s."""
    with LoopbackServer(trickle_reply(500, "application/json", ERROR_TEXT)) as server:
        result, tally, seconds = _call(server, sync, target=target, stream=stream, timeout_ms=TIMEOUT_MS)
    assert isinstance(result.error, _errors_of(target).SDKError), repr(result.error)
    assert result.error.status_code == 500
    assert result.error.body.startswith('{"message": "x'), result.error.body
    assert "error body incomplete (deadline)" in result.error.body
    assert seconds < 4.0, f"the call took {seconds:.1f} s"
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("stream", [pytest.param(False, id="complete"), pytest.param(True, id="stream")])
@pytest.mark.parametrize("target", TARGETS)
def test_unexpected_success_body_that_trickles_ends_within_timeout_ms(target: str, stream: bool, sync: bool) -> None:
    """A ``200 text/html`` (a proxy's page, say) that trickles for 6 s, to a stream and to a
    ``complete``: no method accepts it, so the caller gets upstream's "Unexpected response
    received" SDKError, within ``timeout_ms``. Upstream reads it to its end first."""
    with LoopbackServer(trickle_reply(200, "text/html", HTML_PAGE)) as server:
        result, tally, seconds = _call(server, sync, target=target, stream=stream, timeout_ms=TIMEOUT_MS)
    assert isinstance(result.error, _errors_of(target).SDKError), repr(result.error)
    assert "Unexpected response received" in str(result.error)
    assert result.error.status_code == 200
    assert result.error.body.startswith("<html>y"), result.error.body
    assert seconds < 4.0, f"the call took {seconds:.1f} s"
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("stream", [pytest.param(False, id="complete"), pytest.param(True, id="stream")])
def test_unexpected_success_body_in_full_is_shown(stream: bool, sync: bool) -> None:
    """A short ``200 text/html`` arrives whole: the SDKError carries all of it, no note, and the
    connection goes back to the pool."""
    page = b"<html>maintenance</html>"
    with LoopbackServer(Reply(200, {"content-type": "text/html"}, [page])) as server:
        result, tally, _ = _call(server, sync, stream=stream, timeout_ms=TIMEOUT_MS)
        connections = server.connections_accepted
    assert isinstance(result.error, _errors_of("mistral").SDKError), repr(result.error)
    assert result.error.body == page.decode()
    assert tally.responses_left_open == 0 and tally.responses_closed_unread == 0 and connections == 1


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("stream", [pytest.param(False, id="complete"), pytest.param(True, id="stream")])
def test_slow_healthy_answer_is_not_cut(stream: bool, sync: bool) -> None:
    """A healthy answer that takes 3 s in all, 100 ms between pieces, with ``timeout_ms`` 1.5 s:
    it arrives whole. Success bodies keep upstream's per-read timeout; only bodies the caller sees
    inside an error get a deadline."""
    reply = slow_healthy_reply(stream)
    with LoopbackServer(reply) as server:
        result, tally, seconds = _call(server, sync, stream=stream, timeout_ms=TIMEOUT_MS)
    assert result.error is None, repr(result.error)
    assert result.events == (30 if stream else 0)
    assert seconds > 2.5
    assert tally.responses_left_open == 0 and tally.in_use == 0


# ------------------------------------------------------- an event that never ends


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_event_that_never_ends_is_cut_at_event_max_bytes(target: str, sync: bool, monkeypatch: Any) -> None:
    """A 200 event stream whose first event never ends (512 KiB without a blank line, bound
    lowered to 32 KiB so that upstream's byte-by-byte scan fails the test in seconds): once the
    event passes ``release.EVENT_MAX_BYTES`` the stream ends with the target's SDKError (status
    200, the event's first 1,024 bytes as its body) and the response is closed. Upstream buffers
    the whole body, then fails to validate it."""
    from mistralai_patched import release

    monkeypatch.setattr(release, "EVENT_MAX_BYTES", 32 * 1024)
    with LoopbackServer(endless_event_reply(512 * 1024)) as server:
        result, tally, _ = _call(server, sync, target=target, timeout_ms=5000)
    assert isinstance(result.error, _errors_of(target).SDKError), repr(result.error)[:300]
    assert result.error.status_code == 200 and "over 32768 bytes" in str(result.error)
    assert result.error.body.startswith(EVENT_START.decode() + "zzz"), result.error.body[:80]
    assert "first 1024 bytes shown" in result.error.body and len(result.error.body) < 2048
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize("sync", MODES)
def test_event_that_never_ends_holds_at_most_event_max_bytes(sync: bool) -> None:
    """The default bound, 16 MiB, against an event that never ends (40 MiB): the call's peak
    traced memory stays under 24 MiB and it ends with the SDKError."""
    result, tally, peak = _stream_peak(sync, endless_event_reply())
    assert isinstance(result.error, _errors_of("mistral").SDKError), repr(result.error)[:300]
    assert "EVENT_MAX_BYTES" in str(result.error)
    assert peak < 24, f"peak traced memory {peak:.1f} MiB"
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_event_that_trickles_without_end_ends_within_timeout_ms(target: str, sync: bool) -> None:
    """A 200 event stream whose first event comes one byte per 100 ms and never ends (6 s): no
    single read times out, yet the stream ends with the HTTP library's ReadTimeout once the event
    is older than the read timeout (``timeout_ms``, 1.5 s). Upstream waits the 6 s out."""
    with LoopbackServer(trickle_reply(200, "text/event-stream", EVENT_START + b"z" * 100)) as server:
        result, tally, seconds = _call(server, sync, target=target, timeout_ms=TIMEOUT_MS)
    assert isinstance(result.error, line_library().ReadTimeout), repr(result.error)
    assert "after its first byte" in str(result.error)
    assert seconds < 4.0, f"the call took {seconds:.1f} s"
    assert tally.responses_left_open == 0 and tally.in_use == 0


def _event(content: str) -> bytes:
    import json

    delta = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


@pytest.mark.parametrize("sync", MODES)
def test_large_events_under_the_bound_are_not_cut(sync: bool) -> None:
    """One 8 MiB event, then 32 events of 1 MiB (40 MiB in all), in 64 KiB chunks: every event
    arrives; the bound is on one event, not on the stream."""
    body = _event("z" * (8 * MIB)) + b"".join(_event("y" * MIB) for _ in range(32)) + b"data: [DONE]\n\n"
    chunks = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]
    with LoopbackServer(Reply(200, {"content-type": "text/event-stream"}, chunks, chunked=True)) as server:
        result, tally, _ = _call(server, sync, timeout_ms=5000)
    assert result.error is None and result.events == 33, repr(result.error)
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize("sync", MODES)
def test_events_each_slower_than_a_read_but_within_timeout_ms_are_not_cut(sync: bool) -> None:
    """Three events, each in 10 pieces 100 ms apart (about 1 s per event, 3 s in all), with
    ``timeout_ms`` 1.5 s: every event ends within the read timeout of its first byte, so none is
    cut, although the stream lasts twice as long."""
    chunks = []
    for i in range(3):
        event = _event(f"t{i}")
        step = -(-len(event) // 10)
        chunks += [event[j : j + step] for j in range(0, len(event), step)]
    chunks.append(b"data: [DONE]\n\n")
    reply = Reply(200, {"content-type": "text/event-stream"}, chunks, chunked=True, delay_ms=100)
    with LoopbackServer(reply) as server:
        result, tally, seconds = _call(server, sync, timeout_ms=TIMEOUT_MS)
    assert result.error is None and result.events == 3, repr(result.error)
    assert seconds > 2.5
    assert tally.responses_left_open == 0 and tally.in_use == 0


def test_every_success_media_type_of_the_generated_methods_is_known() -> None:
    """``release.SUCCESS_MEDIA_TYPES`` lists what the generated methods accept for a 2xx body; a
    2xx body of another type is read as an error body, within a bound. An upstream release whose
    methods accept a new type must fail here, not have its answers cut."""
    import pathlib
    import re

    from mistralai_patched import release

    root = pathlib.Path(importlib.import_module("mistralai").__file__).parent
    pattern = re.compile(r'match_response\(\s*http_res,\s*(\[[^\]]*\]|"[^"]*"),\s*"([^"]*)"\s*\)')
    seen = set()
    for path in root.rglob("*.py"):
        for codes, media_type in pattern.findall(path.read_text(encoding="utf-8")):
            if not any(code.startswith("2") for code in re.findall(r'"([^"]*)"', codes)):
                continue
            seen.add(media_type)
            known = (media_type in release.SUCCESS_MEDIA_TYPES or media_type.startswith("audio/")
                     or (media_type == "*" and set(re.findall(r'"([^"]*)"', codes)) == {"204"}))
            assert known, f"{path.relative_to(root)} accepts {codes} {media_type}: add it to SUCCESS_MEDIA_TYPES"
    assert "application/json" in seen and "text/event-stream" in seen


# ------------------------------------------------------------------- compressed bodies


def _peak_mib(run: Callable[[], Any]) -> Any:
    tracemalloc.start()
    try:
        value = run()
        return value, tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("sync", MODES)
def test_compressed_retried_body_is_not_decoded(sync: bool) -> None:
    """A retried 429 whose ``gzip, gzip`` body decodes to 128 MiB: drained raw (a few hundred
    bytes), so the call's memory stays small and the connection is reused."""
    with LoopbackServer(respond=_first_then(gzip_gzip_reply(429), sse_reply(2))) as server:
        (result, tally, _), peak = _peak_mib(
            lambda: _call(server, sync, retries=retry_config("mistral", max_elapsed_ms=5000), timeout_ms=5000))
        connections = server.connections_accepted
    assert result.error is None and result.events == 2, result.error
    assert peak < 24, f"peak traced memory {peak:.0f} MiB"
    assert tally.responses_closed_unread == 0 and connections == 1


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("coding", BOMB_CODINGS)
@pytest.mark.parametrize("target", TARGETS)
def test_compressed_error_body_is_decoded_within_a_bound(target: str, coding: str, sync: bool) -> None:
    """The final error body (``gzip, gzip``, ``br`` or ``zstd``, decoding to 128 MiB) is shown
    decoded, at most DECODED_MAX_BYTES of it, with a note that it was cut; upstream decodes all
    128 MiB."""
    with LoopbackServer(bomb_reply(500, coding)) as server:
        (result, tally, _), peak = _peak_mib(lambda: _call(server, sync, target=target, timeout_ms=5000))
    sdk_error = importlib.import_module(target_module(target) + ".errors").SDKError
    assert isinstance(result.error, sdk_error), repr(result.error)
    assert result.error.status_code == 500
    assert "decoded size over bound" in result.error.body
    assert peak < 24, f"peak traced memory {peak:.0f} MiB"
    assert tally.responses_left_open == 0 and tally.in_use == 0


# ------------------------------------------------- a non-streamed success body over the bound


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("framing", ["chunked", "content-length", "chunked-and-small-content-length"])
@pytest.mark.parametrize("target", TARGETS)
def test_success_body_over_the_bound_ends_with_sdk_error(target: str, framing: str, sync: bool, monkeypatch: Any) -> None:
    """A valid 40 MiB chat completion with the bound lowered to 1 MiB: the call ends with an
    ``SDKError`` (status 200) carrying the body's first bytes and a note, having held a few MiB;
    the response is closed. A chunked body is counted as it arrives, also when it declares a small
    ``Content-Length`` too (h11 frames it by the chunks); a declared ``Content-Length`` over the
    bound is refused before any of the body is read. Upstream reads every byte."""
    reply = huge_completion_reply(40, chunked=framing != "content-length")
    if framing == "chunked-and-small-content-length":
        reply.headers["content-length"] = "100"
    error = _over_bound_error(reply, sync, monkeypatch, MIB, target=target, stream=False)
    assert "over 1048576 bytes" in error.body or "more than 1048576 bytes" in error.body
    if framing != "content-length":
        assert error.body.startswith('{"id": "cmpl-huge"')


def _over_bound_error(reply: Reply, sync: bool, monkeypatch: Any, bound: int, target: str = "mistral",
                      stream: bool = False) -> Any:
    """One call answered by ``reply`` with ``SUCCESS_MAX_BYTES`` lowered to ``bound``: it must end
    with the target's ``SDKError`` (status 200), the call's peak traced memory under 24 MiB and no
    response left open or connection in use; returns the error."""
    monkeypatch.setattr(release, "SUCCESS_MAX_BYTES", bound)
    with LoopbackServer(reply) as server:
        (result, tally, _), peak = _peak_mib(lambda: _call(server, sync, target=target, stream=stream, timeout_ms=5000))
    assert isinstance(result.error, _errors_of(target).SDKError), repr(result.error)[:300]
    assert result.error.status_code == 200
    assert peak < 24, f"peak traced memory {peak:.1f} MiB"
    assert tally.responses_left_open == 0 and tally.in_use == 0
    return result.error


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_json_answer_to_a_stream_over_the_bound_ends_with_sdk_error(target: str, sync: bool, monkeypatch: Any) -> None:
    """A stream call answered by a valid 40 MiB ``200 application/json`` (the generated method
    reads it with ``stream_to_text``, as ``responses.create`` and ``audio.speech`` read their JSON
    answers on 3.x), bound lowered to 1 MiB: ``SDKError`` (status 200) with the first bytes and a
    note, a few MiB held. Upstream reads all 40 MiB into its error."""
    error = _over_bound_error(huge_completion_reply(40), sync, monkeypatch, MIB, target=target, stream=True)
    assert "more than 1048576 bytes" in error.body[-200:]


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("coding", BOMB_CODINGS)
def test_compressed_success_body_is_decoded_within_the_bound(coding: str, sync: bool, monkeypatch: Any) -> None:
    """A ``200 application/json`` of a few hundred bytes whose ``gzip, gzip`` (or ``br``, or
    ``zstd``) decodes to 128 MiB, with the bound lowered to 4 MiB: decoded at most that far, then
    an ``SDKError`` (status 200); the call's peak traced memory stays under 24 MiB. Upstream
    decodes all 128 MiB."""
    error = _over_bound_error(bomb_reply(200, coding), sync, monkeypatch, 4 * MIB)
    assert "decoded size over 4194304 bytes" in error.body


def _completion_bodies(coding: str) -> Reply:
    body = completion_reply().chunks[0]
    if coding == "identity":
        return Reply(200, {"content-type": "application/json"}, [body[:40], body[40:]], chunked=True)
    header = "deflate" if coding == "raw-deflate" else coding
    return Reply(200, {"content-type": "application/json", "content-encoding": header}, [_encoded(body, coding)])


CODINGS = ["gzip", "deflate", "raw-deflate", "br", "zstd", "br, gzip", "x-unknown, gzip"]
"""Codings of healthy bodies: each one the HTTP library decodes, two at once, and one it does not
know (left as it is, by the library as by the fork)."""


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("coding", ["identity", *CODINGS])
def test_success_bodies_under_the_bound_are_read_and_their_connection_reused(coding: str, sync: bool) -> None:
    """Answers counted or decoded by the fork (chunked; gzip, deflate, br, zstd) come out as
    upstream's: the completion parses, and three calls in a row use one connection."""
    with LoopbackServer(respond=lambda handler: _completion_bodies(coding)) as server:
        shared = SharedClient("mistral", server.url, sync=sync, pool=2, timeout_ms=5000)
        if sync:
            with shared:
                answers = [shared.sdk.chat.complete(model="m", messages=MESSAGES) for _ in range(3)]
                tally = shared.tally()
        else:

            async def run() -> Any:
                async with shared:
                    return [await shared.sdk.chat.complete_async(model="m", messages=MESSAGES) for _ in range(3)], shared.tally()

            answers, tally = asyncio.run(run())
        connections = server.connections_accepted
    assert [answer.choices[0].message.content for answer in answers] == ["hi"] * 3
    assert connections == 1
    assert tally.responses_left_open == 0 and tally.in_use == 0


def _encoded(body: bytes, codings: str) -> bytes:
    """``body`` in ``codings`` (applied in order): gzip; zlib-wrapped deflate (RFC 9110); raw
    deflate, as some servers send it; br; zstd; a coding no library knows (left as it is)."""
    wbits = {"gzip": GZIP_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}
    for coding in codings.split(", "):
        if coding in wbits:
            body = compressed([body], wbits[coding])
        elif coding != "x-unknown":
            body = coded([body], coding)
    return body


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("coding", CODINGS)
def test_compressed_event_stream_is_read_and_its_connection_reused(coding: str, sync: bool) -> None:
    """A content-coded event stream: every event arrives, and the rest of the body after
    ``[DONE]`` is drained raw, so two calls in a row use one connection. Upstream closes at
    ``[DONE]`` and opens a second connection."""
    reply = sse_reply(3)
    body = _encoded(b"".join(reply.chunks), coding)
    coded = Reply(200, {"content-type": "text/event-stream",
                        "content-encoding": "deflate" if coding == "raw-deflate" else coding},
                  [body[: len(body) // 2], body[len(body) // 2 :]], chunked=True)
    with LoopbackServer(coded) as server:
        shared = SharedClient("mistral", server.url, sync=sync, pool=2, timeout_ms=5000)
        if sync:
            with shared:
                results = [shared.call(), shared.call()]
                tally = shared.tally()
        else:

            async def run() -> Any:
                async with shared:
                    return [await shared.call_async(), await shared.call_async()], shared.tally()

            results, tally = asyncio.run(run())
        connections = server.connections_accepted
    assert [(r.error, r.events) for r in results] == [(None, 3), (None, 3)]
    assert connections == 1 and tally.responses_closed_unread == 0 and tally.responses_left_open == 0


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("coding", BOMB_CODINGS)
def test_compressed_event_stream_is_decoded_in_bounded_pieces(coding: str, sync: bool, monkeypatch: Any) -> None:
    """A ``gzip, gzip`` (or ``br``, or ``zstd``) event stream of a few hundred bytes whose one
    event decodes to 2 MiB and never ends (bound lowered to 32 KiB so that upstream's byte scan
    fails in seconds): decoded about 64 KiB at a time and cut at the bound, so the call holds
    well under 2 MiB. Upstream buffers the event whole (with httpx, the first received chunk is
    decoded whole)."""
    from mistralai_patched import release

    monkeypatch.setattr(release, "EVENT_MAX_BYTES", 32 * 1024)
    result, tally, peak = _bomb_stream(sync, coding, 2)
    assert isinstance(result.error, _errors_of("mistral").SDKError), repr(result.error)[:300]
    assert "over 32768 bytes" in str(result.error)
    assert peak < 1.5, f"peak traced memory {peak:.1f} MiB"
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("coding", BOMB_CODINGS)
def test_compressed_event_stream_bomb_holds_at_most_event_max_bytes(coding: str, sync: bool) -> None:
    """The default bound against ``gzip, gzip`` (400 bytes), ``br`` or ``zstd`` whose one event
    decodes to 128 MiB. The call's peak traced memory stays under 24 MiB (httpx alone decodes
    ``gzip, gzip`` whole: 270 MiB)."""
    result, tally, peak = _bomb_stream(sync, coding, 128)
    assert isinstance(result.error, _errors_of("mistral").SDKError), repr(result.error)[:300]
    assert peak < 24, f"peak traced memory {peak:.1f} MiB"
    assert tally.responses_left_open == 0 and tally.in_use == 0


def _bomb_stream(sync: bool, coding: str, mib: int) -> Any:
    """A stream call answered by a ``coding`` event that never ends (EVENT_START, then ``mib`` MiB
    of ``z``); see :func:`_stream_peak`."""
    event = itertools.chain([EVENT_START], itertools.repeat(b"z" * MIB, mib))
    body = compressed([compressed(event)]) if coding == "gzip, gzip" else coded(event, coding)
    headers = {"content-type": "text/event-stream", "content-encoding": coding}
    return _stream_peak(sync, Reply(200, headers, [body]))


def _stream_peak(sync: bool, reply: Reply) -> Any:
    """One stream call of the main client answered by ``reply``; returns (CallResult, tally, peak
    traced MiB of the call), imports and model classes warmed up outside the measure."""
    with LoopbackServer(sse_reply(2)) as server:
        _call(server, sync)
    with LoopbackServer(reply) as server:
        (result, tally, _), peak = _peak_mib(lambda: _call(server, sync, timeout_ms=5000))
    return result, tally, peak


# ------------------------------------------------------------ streams dropped without close


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_sync_stream_dropped_unclosed_gives_its_connection_back(target: str) -> None:
    """``s = sdk.chat.stream(...); del s``: with a pool of one, the next call gets the connection
    (upstream: PoolTimeout), and a ResourceWarning names the call."""
    with LoopbackServer(sse_reply(3)) as server, SharedClient(target, server.url, sync=True, pool=1) as shared:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            events = shared.sdk.chat.stream(model="m", messages=MESSAGES)
            del events
            gc.collect()
        result = shared.call()
        assert result.error is None and result.events == 3, repr(result.error)
        assert shared.tally().responses_left_open == 0
    assert any(issubclass(w.category, ResourceWarning) and "without being closed" in str(w.message) for w in caught)


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
async def test_async_stream_dropped_unclosed_gives_its_connection_back(target: str) -> None:
    with LoopbackServer(sse_reply(3)) as server:
        async with SharedClient(target, server.url, sync=False, pool=1) as shared:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                events = await shared.sdk.chat.stream_async(model="m", messages=MESSAGES)
                del events
                gc.collect()
            await asyncio.sleep(0.05)  # the close runs on this loop
            result = await shared.call_async()
            assert result.error is None and result.events == 3, repr(result.error)
            assert shared.tally().responses_left_open == 0
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
