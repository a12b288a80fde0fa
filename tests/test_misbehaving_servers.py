"""Servers and proxies that misbehave (issue 3, item 2), on a real loopback server.

Each case: no response left open, no pooled connection left in use, a clear error, and for the
over-bound and slow cases the connection is closed rather than reused. Cases pristine upstream
2.10.1 fails are marked ``bites``: it reads error bodies without a bound, raises a bare
``httpx.ReadTimeout``/``ReadError``/``RemoteProtocolError`` (no status, no body) when an error
body trickles or is cut, leaves retried responses open in azure/gcp, discards every retried
connection in the main client, and sleeps a ``Retry-After`` past the backoff's max elapsed time.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)
import pytest

from conftest import TARGETS, call_once, retry_leak_case
from mistralai_patched import release
from mistralai_patched.loopback import LoopbackServer, Reply, error_reply, sse_reply
from mistralai_patched.harness import retry_config, target_module

pytestmark = pytest.mark.long  # one of the long suites: .ci/run runs them in full on one Python

MODES = [pytest.param(True, id="sync"), pytest.param(False, id="async")]


def _sdk_error(target: str) -> type:
    import importlib

    return importlib.import_module(target_module(target) + ".errors").SDKError


def _error_json(status: int, message: str) -> bytes:
    return json.dumps({"object": "error", "message": message, "type": "loopback", "code": str(status)}).encode()


def _pieces(body: bytes, n: int) -> List[bytes]:
    size = -(-len(body) // n)
    return [body[i:i + size] for i in range(0, len(body), size)]


def _assert_clean(out: Any) -> None:
    assert out.left_open == 0, f"{out.left_open} response(s) left open"
    assert out.in_use == 0, f"{out.in_use} pooled connection(s) still in use"


# ------------------------------------------------------------------------- error bodies


@pytest.mark.bites
@pytest.mark.parametrize("retries", [False, True], ids=["once", "retries"])
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_error_body_over_the_bound(server: LoopbackServer, target: str, sync: bool, retries: bool,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 kB error body with a 1 kB drain bound: the prefix and a note reach the caller, and
    no connection is reused (each response's connection is closed)."""
    monkeypatch.setattr(release, "DRAIN_MAX_BYTES", 1024)
    server.reply = error_reply(503, "x" * 10_000)
    config = retry_config(target, max_elapsed_ms=60) if retries else None
    out = call_once(server.url, target, sync=sync, retries=config, calls=2)
    assert isinstance(out.error, _sdk_error(target)), repr(out.error)
    assert out.error.status_code == 503  # type: ignore[attr-defined]
    assert "xxxx" in out.error.body and "incomplete (over bound)" in out.error.body  # type: ignore[attr-defined]
    _assert_clean(out)
    assert server.connections_accepted == server.requests_served


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_error_body_trickling_slower_than_the_read_timeout(server: LoopbackServer, target: str, sync: bool) -> None:
    """An error body sent in pieces 400 ms apart, read timeout 150 ms: the call ends with the
    status and what arrived, and the connection is closed, not reused."""
    server.reply = Reply(500, {"content-type": "application/json"},
                         _pieces(_error_json(500, "slow boom"), 4), delay_ms=400)
    out = call_once(server.url, target, sync=sync, timeout_ms=150, calls=2)
    assert isinstance(out.error, _sdk_error(target)), repr(out.error)
    assert out.error.status_code == 500  # type: ignore[attr-defined]
    assert "error body incomplete" in out.error.body  # type: ignore[attr-defined]
    assert out.elapsed < 2 * 1.6 + 1.0, "each call is bounded by the read timeout, not the body"
    _assert_clean(out)
    assert server.connections_accepted == 2


@pytest.mark.bites
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_connection_dropped_in_the_middle_of_an_error_body(server: LoopbackServer, target: str, sync: bool,
                                                           reset: bool) -> None:
    body = _error_json(502, "cut " * 200)
    server.reply = Reply(502, {"content-type": "application/json"}, _pieces(body, 2),
                         content_length=len(body), cut_after=1, reset=reset)
    config = retry_config(target, max_elapsed_ms=60)
    out = call_once(server.url, target, sync=sync, retries=config)
    assert isinstance(out.error, _sdk_error(target)), repr(out.error)
    assert out.error.status_code == 502  # type: ignore[attr-defined]
    assert "cut cut" in out.error.body and "error body incomplete" in out.error.body  # type: ignore[attr-defined]
    _assert_clean(out)


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_chunked_error_body_without_length_is_drained_and_reused(server: LoopbackServer, target: str,
                                                                 sync: bool) -> None:
    server.reply = Reply(429, {"content-type": "application/json"},
                         _pieces(_error_json(429, "chunked boom"), 3), chunked=True)
    out = call_once(server.url, target, sync=sync, retries=retry_config(target, max_elapsed_ms=400))
    assert isinstance(out.error, _sdk_error(target)), repr(out.error)
    assert out.error.status_code == 429 and "chunked boom" in out.error.body  # type: ignore[attr-defined]
    _assert_clean(out)
    assert server.requests_served > 1
    assert server.connections_accepted == 1, "every retried attempt reuses the drained connection"


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", [retry_leak_case(t) for t in TARGETS])  # bites: upstream leaves it open
def test_connection_close_responses(server: LoopbackServer, target: str, sync: bool) -> None:
    """The server closes after each error: each attempt needs a new connection, nothing leaks,
    and the caller gets the server's error (not a protocol error)."""
    server.reply = error_reply(503, "closing boom", close=True)
    out = call_once(server.url, target, sync=sync, retries=retry_config(target, max_elapsed_ms=400), pool=1)
    assert isinstance(out.error, _sdk_error(target)), repr(out.error)
    assert out.error.status_code == 503 and "closing boom" in out.error.body  # type: ignore[attr-defined]
    _assert_clean(out)
    assert server.requests_served > 1
    assert server.connections_accepted == server.requests_served


# ------------------------------------------------------------------ successful streams


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_sse_stream_cut_mid_event(server: LoopbackServer, target: str, sync: bool, reset: bool) -> None:
    reply = sse_reply(5)
    reply.chunks[2] = reply.chunks[2][:25]  # half an event, then the connection drops
    reply.cut_after = 3
    reply.reset = reset
    server.reply = reply
    out = call_once(server.url, target, sync=sync, pool=1, calls=2)
    assert isinstance(out.error, httpx.TransportError), repr(out.error)
    assert out.events == 2
    _assert_clean(out)


# ------------------------------------------------------------------- Retry-After headers


def _retry_after_headers(target: str, seconds: float) -> Dict[str, str]:
    if target == "mistral":  # the main client reads retry-after-ms first
        return {"retry-after-ms": str(int(seconds * 1000))}
    return {"retry-after": str(seconds)}


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_retry_after_is_honoured(server: LoopbackServer, target: str, sync: bool) -> None:
    server.reply = error_reply(429, "slow down", headers=_retry_after_headers(target, 0.2))
    out = call_once(server.url, target, sync=sync, retries=retry_config(target, max_elapsed_ms=500))
    assert isinstance(out.error, _sdk_error(target)) and out.error.status_code == 429  # type: ignore[attr-defined]
    gaps = [b - a for a, b in zip(server.request_times, server.request_times[1:])]
    assert gaps and all(gap >= 0.19 for gap in gaps), gaps
    _assert_clean(out)
    assert server.connections_accepted == 1


# Values upstream raises OverflowError for (its seconds * 1000 is not finite) ...
OVERFLOWING_RETRY_AFTER = ["inf", "Infinity", "-inf", "1e308"]
# ... and values it already treats as absent or as no wait: the fork must keep doing so.
ODD_RETRY_AFTER = ["nan", "-5", "garbage", "", "Fri, 31 Dec 9999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"]


def _odd_retry_after_call(server: LoopbackServer, target: str, sync: bool, value: str) -> Any:
    # The main client reads retry-after-ms first; without it, every target reads Retry-After.
    server.reply = error_reply(429, "odd header", headers={"retry-after": value})
    return call_once(server.url, target, sync=sync, retries=retry_config(target, max_elapsed_ms=300))


@pytest.mark.bites
@pytest.mark.parametrize("value", OVERFLOWING_RETRY_AFTER)
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_non_finite_retry_after_ends_in_the_sdks_error(server: LoopbackServer, target: str, sync: bool,
                                                       value: str) -> None:
    """Nothing but the SDK's own errors leaves a call: the header is treated as absent and the
    call ends, within the backoff's max elapsed time, in the SDK's 429 with the server's body."""
    out = _odd_retry_after_call(server, target, sync, value)
    assert isinstance(out.error, _sdk_error(target)) and out.error.status_code == 429, repr(out.error)  # type: ignore[attr-defined]
    assert "odd header" in out.error.body  # type: ignore[attr-defined]
    assert out.elapsed < 1.5
    _assert_clean(out)


@pytest.mark.parametrize("value", ODD_RETRY_AFTER)
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_unusable_retry_after_is_absent_or_capped(server: LoopbackServer, target: str, sync: bool, value: str) -> None:
    out = _odd_retry_after_call(server, target, sync, value)
    assert isinstance(out.error, _sdk_error(target)) and out.error.status_code == 429, repr(out.error)  # type: ignore[attr-defined]
    assert out.elapsed < 1.5, "a far-future date is capped and stops the retry loop at once"
    _assert_clean(out)


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_retry_after_past_max_elapsed_time_stops_retrying(server: LoopbackServer, target: str, sync: bool) -> None:
    """The server asks for 3 s, the backoff allows 500 ms in all: the wait is not cut short and
    not overrun; the call returns the server's 429 at once (upstream sleeps the 3 s)."""
    server.reply = error_reply(429, "come back later", headers=_retry_after_headers(target, 3))
    out = call_once(server.url, target, sync=sync, retries=retry_config(target, max_elapsed_ms=500))
    assert isinstance(out.error, _sdk_error(target)) and out.error.status_code == 429  # type: ignore[attr-defined]
    assert "come back later" in out.error.body  # type: ignore[attr-defined]
    assert out.elapsed < 1.5
    assert server.requests_served == 1
    _assert_clean(out)

