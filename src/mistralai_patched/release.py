"""Release of ``httpx.Response`` objects the SDK will not hand to its caller.

This is the helper the rendered templates (``basesdk.py``, ``utils/retries.py``,
``utils/eventstreaming.py``) call in every SDK target. "Release" means: read the rest of the body
up to a bound so that the connection goes back to the connection pool for keep-alive reuse, then
close. When the body is larger than the
bound, when reading fails or exceeds the drain deadline, or when the task is being cancelled (or a
``KeyboardInterrupt`` arrives), the response is closed at once and httpx discards the connection.

Upstream (mistralai 2.10.1) closes a retried response unread in the main client only
(``exception.response.close()``), which throws away the keep-alive connection, and leaves the
response open on every other path.

Only public httpx API is used: ``Response.stream`` is swapped for a bounded wrapper while
``Response.read()``/``aread()`` runs, then put back. Nothing here is bound to one HTTP library:
the library (httpx, or httpx2, its continuation with the same API and its own classes) is the
one the response in hand belongs to (:func:`http_library`), so a user's httpx2 client works on
a line generated for httpx and the other way round.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import importlib
import os
import select
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from email.message import Message
from types import ModuleType
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, List, Optional, Tuple, TypeVar, Union

import anyio

from . import codings as codings_module
from .codings import decode_bounded

if TYPE_CHECKING:  # annotations only: the library at run time is the response's own
    import httpx

__all__ = [
    "DRAIN_MAX_BYTES",
    "DRAIN_TIMEOUT_MS",
    "DECODED_MAX_BYTES",
    "ERROR_BODY_TIMEOUT_MS",
    "DrainResult",
    "drain",
    "drain_async",
    "read_error_body",
    "read_error_body_async",
    "decode_bounded",
    "release",
    "release_async",
    "close_now",
    "close_now_async",
    "error_body",
    "SUCCESS_MEDIA_TYPES",
    "success_body",
    "read_body",
    "read_body_async",
    "SUCCESS_MAX_BYTES",
    "body_text",
    "body_text_async",
    "EventStreamResponse",
    "STREAM_DECODE_PIECE",
    "EVENT_MAX_BYTES",
    "EventBounds",
    "http_library",
]

T = TypeVar("T")

DRAIN_MAX_BYTES: int = 64 * 1024
"""Bound, in bytes received from the network (before any content decoding), on a body read to
release a response or to show it in an error."""

DRAIN_TIMEOUT_MS: int = 250
"""Time budget, in ms, of a drain of a body the caller never sees (a retried response, what
follows ``[DONE]``): about one TCP+TLS connection set-up to a distant server, which is what a
drain that gives up costs; a drain is never worth more than a new connection. Each read within
it is bounded by what is left (sync: see :class:`_Watchdog`)."""

DECODED_MAX_BYTES: int = 1024 * 1024
"""Bound, in bytes after content decoding (:mod:`mistralai_patched.codings`), on an error body
shown to the caller."""

EVENT_MAX_BYTES: int = 16 * 1024 * 1024
"""Bound, in bytes (after content decoding), on one block of a successful event stream: an event,
or a comment, up to the blank line that ends it. Upstream buffers a block until its end, however
long: one that never ends takes all memory. Read when a stream starts."""

ERROR_BODY_TIMEOUT_MS: int = 60_000
"""Time budget, in ms, of reading an error body the caller sees when the request has no read
timeout; otherwise the request's read timeout (upstream's ``timeout_ms``) is the budget."""


@dataclass(frozen=True)
class DrainResult:
    """What a drain or an error-body read got.

    Attributes:
        complete: True when the body was read to its end (the connection went back to the pool)
            and, for :func:`read_error_body`, decoded within ``DECODED_MAX_BYTES``; the response's
            ``content`` / ``text`` are then available.
        body: For :func:`read_error_body`, the body as far as it was read and could be decoded
            (decoded; at most ``DECODED_MAX_BYTES``); for :func:`drain`, empty (a drain keeps
            nothing and never decodes) unless the response had been read before.
        reason: Why the read stopped early (``"over bound"``, ``"deadline"``, an exception type
            name, ``"cancelled"``), why the body could not be shown in full (``"decoded size over
            bound"``, ``"content-encoding br not decoded"``), ``"already closed"``, or ``""``.
    """

    complete: bool
    body: bytes
    reason: str = ""


def http_library(obj: Any) -> ModuleType:
    """The HTTP library module (``httpx`` or ``httpx2``) that ``obj``'s class comes from.

    Both libraries name their public classes' module after the library (``httpx.Response``'s
    ``__module__`` is ``"httpx"``), so the class's module, or that of a base class for a user's
    subclass, says which one it is; nothing is chosen at import time.

    Args:
        obj: A response, request or byte stream of either library.

    Raises:
        TypeError: no class in ``type(obj).__mro__`` belongs to an imported library with
            httpx's API (``SyncByteStream``, ``AsyncByteStream``, ``ResponseNotRead``).
    """
    for cls in type(obj).__mro__:
        module = sys.modules.get(cls.__module__.partition(".")[0])
        api = ("SyncByteStream", "AsyncByteStream", "ResponseNotRead")
        if module is not None and all(hasattr(module, name) for name in api):
            return module
    raise TypeError(f"{type(obj).__module__}.{type(obj).__qualname__} is not an object of httpx or httpx2")


# ----------------------------------------------------------------------------- time bounds


def _read_timeout_s(response: httpx.Response) -> Optional[float]:
    """The request's read timeout in seconds (upstream sets it from ``timeout_ms``), or None."""
    try:
        timeout = response.request.extensions.get("timeout", {}).get("read")
    except RuntimeError:  # a response built without a request
        return None
    return None if timeout is None else float(timeout)


def _deadline_s(response: httpx.Response, timeout_ms: Optional[float]) -> float:
    """Seconds a discard drain may take: ``timeout_ms`` (default ``DRAIN_TIMEOUT_MS``), capped by
    ``DRAIN_TIMEOUT_MS`` and by the request's read timeout."""
    budget = DRAIN_TIMEOUT_MS if timeout_ms is None else min(timeout_ms, DRAIN_TIMEOUT_MS)
    seconds = budget / 1000
    read_timeout = _read_timeout_s(response)
    if read_timeout is not None:
        seconds = min(seconds, read_timeout)
    return max(seconds, 0.0)


def _error_body_deadline_s(response: httpx.Response, timeout_ms: Optional[float]) -> float:
    """Seconds reading a shown error body may take: ``timeout_ms``, else the request's read
    timeout, else ``ERROR_BODY_TIMEOUT_MS``."""
    if timeout_ms is not None:
        return max(timeout_ms / 1000, 0.0)
    read_timeout = _read_timeout_s(response)
    return max(ERROR_BODY_TIMEOUT_MS / 1000 if read_timeout is None else read_timeout, 0.0)


class _Guard:
    """One armed deadline of the watchdog: past the deadline, unless disarmed first, the socket
    under the response is shut down, which ends a read blocked on it at once."""

    __slots__ = ("deadline", "last", "sock", "done", "fired")

    def __init__(self, deadline: float, last: float, sock: Any) -> None:
        self.deadline = deadline
        self.last = last
        self.sock = sock
        self.done = False
        self.fired = False

    def __lt__(self, other: "_Guard") -> bool:
        return self.deadline < other.deadline


def _has_data(sock: Any) -> bool:
    """True when bytes wait on ``sock`` (or in its TLS buffer): its reader is not waiting on the
    server but on this interpreter (the GIL), so cutting it would cost a connection for nothing."""
    try:
        if getattr(sock, "pending", None) is not None and sock.pending() > 0:
            return True
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False


class _Watchdog:
    """Hard deadlines for sync reads, which httpx bounds only per read (``timeout.read``, fixed
    for a body when its reading starts): one daemon thread for the process shuts down the socket
    of a drain still waiting on the server at its deadline (``socket.shutdown``, which wakes a
    blocked ``recv``; the read then fails and the connection is discarded, as a closed-unread one
    would be). A drain whose bytes have arrived but whose thread has not run yet (many threads,
    one GIL) gets 10 ms more at a time, up to twice its budget: the bound is on waiting for the
    server, not on this process's scheduling.

    Only for HTTP/1.1, where the socket carries that one response; the socket comes from the
    public ``network_stream`` response extension of httpcore / httpcore2
    (``get_extra_info("socket")``). Arming and disarming take one lock; a connection the drain
    gave back before the deadline is never shut down (disarmed first), and one that completes
    after a shutdown is seen as closed by the connection pool (a shut-down socket is readable,
    so httpcore discards it as expired before reuse).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[_Guard] = []
        self._pid = 0

    def arm(self, response: httpx.Response, deadline: float) -> Optional[_Guard]:
        """Watch the socket under ``response`` until ``deadline`` (monotonic s); None when there
        is no socket of its own to watch (HTTP/2, a mock transport)."""
        if getattr(response, "http_version", "") not in ("HTTP/1.1", "HTTP/1.0"):
            return None
        stream = response.extensions.get("network_stream")
        try:
            sock = stream.get_extra_info("socket") if stream is not None else None
        except Exception:  # noqa: BLE001 - no socket to watch: the per-read bound applies
            sock = None
        if sock is None or not hasattr(sock, "shutdown"):
            return None
        now = time.monotonic()
        guard = _Guard(deadline, deadline + max(deadline - now, 0.0), sock)
        with self._cond:
            if self._pid != os.getpid():  # first use, or a child after fork: no thread yet
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="mistralai-patched-drain-watchdog", daemon=True).start()
            heapq.heappush(self._heap, guard)
            if self._heap[0] is guard:
                self._cond.notify()
        return guard

    def disarm(self, guard: Optional[_Guard]) -> bool:
        """Disarm ``guard``; True when it had fired (the socket was shut down)."""
        if guard is None:
            return False
        with self._cond:
            guard.done = True
            return guard.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                wait = self._heap[0].deadline - now
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                guard = heapq.heappop(self._heap)
                if now < guard.last and _has_data(guard.sock):
                    guard.deadline = min(now + 0.01, guard.last)
                    heapq.heappush(self._heap, guard)
                    continue
                guard.fired = True
                try:
                    guard.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


_WATCHDOG = _Watchdog()


# ----------------------------------------------------------------------------- raw reads


def _add_request(exc: BaseException, response: httpx.Response) -> None:
    """Give a library error raised by a raw stream read its request, as ``iter_raw`` would."""
    try:
        _ = exc.request  # type: ignore[attr-defined]  # raises RuntimeError when it has none
    except RuntimeError:
        exc.request = response.request  # type: ignore[attr-defined]
    except AttributeError:  # not a library error
        pass


def _raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The response's raw body (not decoded), its non-empty chunks as the network gives them; a
    library error gets the request, as ``iter_raw`` gives it."""
    try:
        for chunk in response.stream:
            if chunk:
                yield chunk
    except Exception as exc:
        _add_request(exc, response)
        raise


async def _raw_chunks_async(response: httpx.Response) -> AsyncIterator[bytes]:
    """Async twin of :func:`_raw_chunks`."""
    try:
        async for chunk in response.stream:
            if chunk:
                yield chunk
    except Exception as exc:
        _add_request(exc, response)
        raise


def _take(prefix: bytearray, received: int, chunk: bytes, max_bytes: int, keep: bool) -> int:
    received += len(chunk)
    if keep and len(prefix) < max_bytes:
        prefix += chunk[: max_bytes - len(prefix)]
    return received


def _read_raw(
    response: httpx.Response, chunks: Iterator[bytes], max_bytes: int, deadline: float, keep: bool
) -> Tuple[bool, bytearray, str]:
    """Read ``chunks`` (the response's raw body) to its end within ``max_bytes`` and ``deadline``
    (monotonic seconds), keeping up to ``max_bytes`` of it when ``keep``. Does not close."""
    prefix = bytearray()
    received = 0
    guard = _WATCHDOG.arm(response, deadline)
    reason = ""
    try:
        for chunk in chunks:
            received = _take(prefix, received, chunk, max_bytes, keep)
            if received > max_bytes:
                reason = "over bound"
                break
            if guard is None and time.monotonic() > deadline:  # no watchdog: checked between reads
                reason = "deadline"
                break
    except Exception as exc:  # read failed (or cut by the watchdog): the connection is lost
        reason = type(exc).__name__
    finally:
        if _WATCHDOG.disarm(guard) and reason != "over bound":
            reason = "deadline"  # the socket was shut down: never give this connection back
    return not reason, prefix, reason


async def _read_raw_async(
    chunks: AsyncIterator[bytes], max_bytes: int, deadline: float, keep: bool
) -> Tuple[bool, bytearray, str]:
    """Async twin of :func:`_read_raw`: the deadline is a hard timeout (``anyio.fail_after``)."""
    prefix = bytearray()
    received = 0
    try:
        with anyio.fail_after(max(deadline - time.monotonic(), 0.0)):
            async for chunk in chunks:
                received = _take(prefix, received, chunk, max_bytes, keep)
                if received > max_bytes:
                    return False, prefix, "over bound"
    except TimeoutError:
        return False, prefix, "deadline"
    except Exception as exc:
        return False, prefix, type(exc).__name__
    return True, prefix, ""


def _unread(response: httpx.Response) -> bool:
    return not (response.is_closed or response.is_stream_consumed)


def _closed_result(response: httpx.Response) -> DrainResult:
    try:
        return DrainResult(True, response.content)
    except http_library(response).ResponseNotRead:
        return DrainResult(False, b"", "already closed")


def drain(
    response: httpx.Response,
    *,
    max_bytes: Optional[int] = None,
    timeout_ms: Optional[float] = None,
) -> DrainResult:
    """Read the rest of a sync response's body raw, within a bound, then close it: a body the
    caller never sees (a retried response, one a hook replaced). Never decoded.

    Args:
        response: A response from ``Client.send(..., stream=True)`` of httpx or httpx2 (an already
            read or closed one is only closed).
        max_bytes: Bound on bytes received; default ``DRAIN_MAX_BYTES``. Over it: close at once.
        timeout_ms: Time budget in ms, at most ``DRAIN_TIMEOUT_MS`` (the default) and the
            request's read timeout; a hard deadline over HTTP/1.1 (a read blocked past it is cut
            by shutting the socket down), checked between reads otherwise.

    Returns:
        A ``DrainResult``; when complete, the connection went back to the pool.

    Raises:
        BaseException: ``KeyboardInterrupt``/``SystemExit`` (and other non-``Exception``
            errors) are re-raised after the response is closed at once. Read errors are not
            raised: they end the drain and the response is closed.
    """
    if not _unread(response):
        close_now(response)
        return _closed_result(response)
    limit = DRAIN_MAX_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + _deadline_s(response, timeout_ms)
    try:
        complete, _, reason = _read_raw(response, iter(response.stream), limit, deadline, False)
    except BaseException:
        close_now(response)
        raise
    close_now(response)
    return DrainResult(complete, b"", reason)


async def drain_async(
    response: httpx.Response,
    *,
    max_bytes: Optional[int] = None,
    timeout_ms: Optional[float] = None,
) -> DrainResult:
    """Async twin of :func:`drain` for responses from ``AsyncClient.send``. The deadline is a hard
    timeout. On cancellation the response is closed at once and the cancellation re-raised."""
    if not _unread(response):
        await close_now_async(response)
        return _closed_result(response)
    limit = DRAIN_MAX_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + _deadline_s(response, timeout_ms)
    try:
        complete, _, reason = await _read_raw_async(response.stream.__aiter__(), limit, deadline, False)
    except BaseException:
        await close_now_async(response)
        raise
    await close_now_async(response)
    return DrainResult(complete, b"", reason)


# ----------------------------------------------------------------------------- shown error bodies


def _content_codings(response: httpx.Response) -> List[str]:
    return _parse_codings(response.headers.get("content-encoding", ""))


def _parse_codings(header: str) -> List[str]:
    """The codings a ``Content-Encoding`` value names, in the order applied, lower-case, without
    ``identity``."""
    return [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]


def _plan(response: httpx.Response, codings: List[str]) -> Optional[List[codings_module.Factory]]:
    """How to undo ``codings`` within a bound as the response's HTTP library would
    (:func:`mistralai_patched.codings.plan`): None when the library must decode them itself;
    ``[]`` for none (without looking the library up)."""
    return codings_module.plan(http_library(response), codings) if codings else []


def _show(response: httpx.Response, complete: bool, raw: bytes, reason: str) -> DrainResult:
    """Decode what was read (bounded) and, when it is all there, make it the response's content
    (``Content-Encoding`` removed, as the content is now decoded) so upstream's generated code
    and hooks read ``response.text`` as before."""
    codings = _content_codings(response)
    steps = _plan(response, codings)
    if not steps:
        decoded: Optional[bytes] = None if steps is None else raw
        cut = False
    else:
        decoded, cut = decode_bounded(raw, steps, DECODED_MAX_BYTES, strict=complete)
    if decoded is None or cut or not complete:
        _from_memory(response, None, False)
        if decoded is None:
            return DrainResult(False, b"", reason or f"content-encoding {', '.join(codings)} not decoded")
        return DrainResult(False, decoded, reason or "decoded size over bound")
    _from_memory(response, decoded, bool(steps))
    return DrainResult(True, decoded)


def _from_memory(response: httpx.Response, body: Optional[bytes], decoded: bool) -> None:
    """The response's network stream is closed already (its connection back in the pool, or
    discarded): from here on it reads from memory and ends closed. ``body``: its content, read as
    httpx's ``read()`` reads it (``Content-Encoding`` removed when ``decoded``: the content is
    decoded already); None: no content, closed at once."""
    response.stream = http_library(response).ByteStream(b"" if body is None else body)
    if body is None:
        close_now(response)
        return
    if decoded:
        del response.headers["content-encoding"]
    response.read()


def read_error_body(
    response: httpx.Response, *, max_bytes: Optional[int] = None, timeout_ms: Optional[float] = None
) -> DrainResult:
    """Read an error body the caller will see (in ``SDKError`` or a typed error), bounded in
    bytes received, decoded size and time, then give the connection back.

    The body is read raw within ``max_bytes`` (default ``DRAIN_MAX_BYTES``) and ``timeout_ms``
    (default: the request's read timeout, i.e. upstream's ``timeout_ms``; else
    ``ERROR_BODY_TIMEOUT_MS``), a hard deadline as in :func:`drain`; then decoded
    (:func:`decode_bounded`, at most ``DECODED_MAX_BYTES``). When complete, ``response.text`` and
    ``response.content`` are the decoded body, as after httpx's ``read()``; otherwise the result
    holds the decoded prefix and :func:`error_body` says why it is incomplete.

    Raises:
        BaseException: non-``Exception`` errors, after the response is closed at once.
    """
    if not _unread(response):
        close_now(response)
        return _closed_result(response)
    limit = DRAIN_MAX_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + _error_body_deadline_s(response, timeout_ms)
    original = response.stream
    try:
        complete, raw, reason = _read_raw(response, iter(original), limit, deadline, True)
    except BaseException:
        close_now(response)
        raise
    if complete:
        try:
            original.close()  # body read to its end: the connection goes back to the pool
        except Exception:  # noqa: BLE001 - it is closed either way
            pass
    else:
        close_now(response)
    return _show(response, complete, bytes(raw), reason)


async def read_error_body_async(
    response: httpx.Response, *, max_bytes: Optional[int] = None, timeout_ms: Optional[float] = None
) -> DrainResult:
    """Async twin of :func:`read_error_body`. On cancellation the response is closed at once and
    the cancellation re-raised."""
    if not _unread(response):
        await close_now_async(response)
        return _closed_result(response)
    limit = DRAIN_MAX_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + _error_body_deadline_s(response, timeout_ms)
    original = response.stream
    try:
        complete, raw, reason = await _read_raw_async(original.__aiter__(), limit, deadline, True)
    except BaseException:
        await close_now_async(response)
        raise
    if complete:
        try:
            await _uncancellable(original.aclose)
        except Exception:  # noqa: BLE001
            pass
    else:
        await close_now_async(response)
    return _show(response, complete, bytes(raw), reason)


def release(response: Optional[httpx.Response], *, timeout_ms: Optional[float] = None) -> None:
    """Drain (raw, bounded) and close a sync response the SDK will not return; ``None`` is
    ignored. ``timeout_ms`` caps the drain's time budget further (the retry loop passes its
    ``max_elapsed_time``); see :func:`drain`.

    Never raises an ordinary ``Exception``; see :func:`drain` for the rest.
    """
    if response is not None:
        drain(response, timeout_ms=timeout_ms)


async def release_async(response: Optional[httpx.Response], *, timeout_ms: Optional[float] = None) -> None:
    """Async twin of :func:`release`."""
    if response is not None:
        await drain_async(response, timeout_ms=timeout_ms)


def close_now(response: Optional[httpx.Response]) -> None:
    """Close a sync response at once, discarding its connection if the body is unread.

    Used where waiting for the body is wrong (a successful stream a hook rejected, an
    interrupt). Close errors are swallowed: the response is marked closed either way.
    """
    if response is None or response.is_closed:
        return
    try:
        response.close()
    except Exception:  # pylint: disable=broad-exception-caught
        pass


async def close_now_async(response: Optional[httpx.Response]) -> None:
    """Async twin of :func:`close_now`, which a cancellation cannot cut short.

    On asyncio the close runs as a task of its own and is awaited to its end through any number
    of cancellations (``task.cancel()``, ``asyncio.timeout``, ``asyncio.wait_for``), which are
    re-raised once it is done: ``anyio.CancelScope(shield=True)`` does not hold off asyncio's own
    cancellation, and httpx marks the response closed before its stream's ``aclose`` (which
    gives the connection back to the pool) has run. On other event loops (trio) anyio's shield
    does hold.

    Raises:
        asyncio.CancelledError: the caller was cancelled meanwhile (after the close finished).
    """
    if response is None or response.is_closed:
        return
    try:
        await _uncancellable(response.aclose)
    except Exception:  # pylint: disable=broad-exception-caught
        pass


async def _uncancellable(close: Any) -> None:
    """Await ``close()`` to its end whatever cancellations arrive; re-raise the first after."""
    try:
        asyncio.current_task()
    except RuntimeError:  # not asyncio (trio): anyio's shield holds off its cancellation
        with anyio.CancelScope(shield=True):
            await close()
        return
    task = asyncio.ensure_future(close())
    cancelled: Optional[BaseException] = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
        except Exception:  # the close's own error: task.result() below raises it, unless cancelled
            break
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the close's own error gives way to the cancellation
        raise cancelled
    task.result()


def error_body(response: httpx.Response, result: DrainResult) -> str:
    """The error body text to put in an ``SDKError`` after :func:`read_error_body`.

    Returns ``response.text`` when the body was read and decoded completely. Otherwise the
    decoded prefix (charset of the response, else UTF-8, with replacement), followed by a note
    saying why it is incomplete. Never empty when incomplete, so upstream's ``SDKError`` (which
    falls back to ``raw_response.text`` for an empty body) cannot raise ``ResponseNotRead``.
    """
    if result.complete:
        try:
            return response.text
        except http_library(response).ResponseNotRead:
            pass
    prefix = result.body.decode(response.encoding or "utf-8", errors="replace")
    if result.complete:
        return prefix
    return f"{prefix}[mistralai-patched: error body incomplete ({result.reason})]"


# ------------------------------------------------------------------- bodies the generated code reads

SUCCESS_MEDIA_TYPES: frozenset = frozenset(
    {"application/json", "application/x-ndjson", "application/octet-stream", "text/event-stream"}
)
"""Media types a generated method accepts for a 2xx body (besides ``audio/*``, and ``*`` for a
204, which has no body): mistralai 2.10.1 and 3.7.0, every target. A 2xx body of any other type
ends in upstream's "Unexpected response received" ``SDKError``, so it is read as an error body
(bounded). ``tests/test_bounds.py`` checks every rendered method against this set, so an upstream
release that accepts a new type fails the tests instead of having its bodies cut."""


def _media_type(response: httpx.Response) -> str:
    # A server sends the same few values: each short one is parsed once (at most 64 kept).
    content_type = response.headers.get("content-type", "")
    if len(content_type) > 200:
        return _parse_media_type(content_type)
    return _cached_media_type(content_type)


def _parse_media_type(content_type: str) -> str:
    # As upstream's utils.match_content_type parses it (email.message; "text/plain" when absent
    # or malformed).
    message = Message()
    message["content-type"] = content_type
    return message.get_content_type()


_cached_media_type = functools.lru_cache(maxsize=64)(_parse_media_type)


def success_body(response: httpx.Response) -> bool:
    """True when ``response`` is a 2xx whose body some generated method returns or parses (media
    type in :data:`SUCCESS_MEDIA_TYPES` or ``audio/*``): such a body is read as upstream reads it,
    with the request's per-read timeout only, so a long healthy answer is never cut. Any other body
    (an error status, or e.g. ``200 text/html``) is one the caller sees only inside an error."""
    if not 200 <= response.status_code < 300:
        return False
    media_type = _media_type(response)
    return media_type in SUCCESS_MEDIA_TYPES or media_type.startswith("audio/")


SUCCESS_MAX_BYTES: int = 128 * 1024 * 1024
"""Bound, in bytes, on a non-streamed call's success body (see :func:`success_body`): bytes
received, and bytes after content decoding (:mod:`mistralai_patched.codings`). Upstream reads such a body whole,
however large, and decodes it whole, so an endless ``200 application/json`` body, or a small
gzip body that expands a thousandfold, takes all memory. A healthy answer stays far below it: a
chat completion is kilobytes; the largest answers (OCR pages with their images in base64, or
embeddings of a large batch) are tens of MB. A call holds about twice the bound at most while
reading. Read at each call: set it on this module to change it."""


def _framing(response: httpx.Response) -> Tuple[List[str], Optional[int]]:
    """The body's content codings (as :func:`_content_codings` gives them) and the length that
    frames it (one ``Content-Length`` of digits and no ``Transfer-Encoding``, which h11 lets take
    precedence; else None), in one pass over the raw headers."""
    codings: List[str] = []
    lengths = []
    for key, value in response.headers.raw:
        key = key.lower()
        if key == b"content-length":
            lengths.append(value)
        elif key == b"content-encoding":
            codings.append(value.decode("latin-1"))
        elif key == b"transfer-encoding":
            lengths.append(b"")
    length = int(lengths[0]) if len(lengths) == 1 and lengths[0].isdigit() else None
    return (_parse_codings(", ".join(codings)) if codings else codings), length


SDKErrorClass = Callable[[str, Any, str], Exception]
"""A target's ``errors.SDKError`` (upstream's ``SDKError(message, raw_response, body)``)."""


def _over_bound(
    response: httpx.Response, sdk_error: SDKErrorClass, raw: Union[bytes, bytearray], codings: List[str], reason: str
) -> Exception:
    """The ``SDKError`` for a success body over the bound: its first bytes (at most
    ``DRAIN_MAX_BYTES`` received, decoded when they can be) and the note of :func:`error_body`."""
    prefix = bytes(raw[:DRAIN_MAX_BYTES])
    steps = _plan(response, codings)
    if steps is None:
        prefix = b""  # left to the library: not decoded here
    elif steps:
        decoded, _ = decode_bounded(prefix, steps, DRAIN_MAX_BYTES)
        prefix = decoded if decoded is not None else b""
    return sdk_error("Response body over bound", response, error_body(response, DrainResult(False, prefix, reason)))


def _library_reads(response: httpx.Response, sdk_error: SDKErrorClass) -> Tuple[List[str], bool]:
    """The body's content codings, and whether the HTTP library's own read is bounded: the body
    is sent as it is with a declared length within the bound (the library reads no more than
    that). Raises ``sdk_error`` when the declared length is over the bound."""
    codings, length = _framing(response)
    if length is None or codings:
        return codings, False
    if length > SUCCESS_MAX_BYTES:
        raise _over_bound(response, sdk_error, b"", [], f"Content-Length {length} over {SUCCESS_MAX_BYTES} bytes")
    return codings, True


def _check_count(response: httpx.Response, sdk_error: SDKErrorClass, raw: bytearray, codings: List[str]) -> None:
    if len(raw) > SUCCESS_MAX_BYTES:
        raise _over_bound(response, sdk_error, raw, codings, f"more than {SUCCESS_MAX_BYTES} bytes")


def _counted_body(response: httpx.Response, sdk_error: SDKErrorClass, raw: bytearray, codings: List[str]) -> None:
    """Make the raw body read in full (within the bound) the response's content, decoded within
    the bound (:mod:`mistralai_patched.codings`; ``Content-Encoding`` then removed, as the content
    is decoded), and read it as httpx's ``read()`` does. Codings that cannot be undone within a
    bound here (``brotli`` older than 1.2), and data that does not decode, are left to the HTTP
    library (which raises its ``DecodingError`` for the latter). Raises ``sdk_error`` when the
    decoded body is over the bound."""
    body = bytes(raw)
    steps = _plan(response, codings)
    if steps:
        decoded, cut = decode_bounded(body, steps, SUCCESS_MAX_BYTES, strict=True, prefix=False)
        if decoded is not None:
            if cut:
                _from_memory(response, None, False)
                raise _over_bound(response, sdk_error, body, codings, f"decoded size over {SUCCESS_MAX_BYTES} bytes")
            _from_memory(response, decoded, True)
            return
    _from_memory(response, body, False)


def read_body(response: httpx.Response, sdk_error: SDKErrorClass) -> None:
    """Read a non-streamed call's success body (see :func:`success_body`) as
    ``Client.send(..., stream=False)`` does, with the request's per-read timeout only, within
    :data:`SUCCESS_MAX_BYTES` (bytes received and bytes after decoding). On any error the
    response is closed at once and the error re-raised, as httpx does.

    A body sent as it is with a ``Content-Length`` within the bound is httpx's ``read()``
    unchanged. Any other body (chunked, or content-coded) is read raw, counted, and then decoded
    within the bound (:mod:`mistralai_patched.codings`: the codings the HTTP library decodes),
    or, for what cannot be undone within a bound here (br with ``brotli`` older than 1.2), by the
    HTTP library, unbounded after decoding.

    ``do_request`` sends every request with ``stream=True`` and calls this only for success
    bodies, so that error bodies and unexpected bodies are read within a bound
    (:func:`read_error_body`) instead of inside ``send``.

    Args:
        response: The response, its body unread.
        sdk_error: The target's ``errors.SDKError`` class.

    Raises:
        sdk_error: ``"Response body over bound"``, status of the response, with the body's first
            bytes (at most ``DRAIN_MAX_BYTES`` received) and a note saying how it went over (the
            response is closed, its connection discarded).
        httpx.HTTPError: as ``read()`` (``ReadTimeout``, ``RemoteProtocolError``...).
    """
    try:
        codings, bounded = _library_reads(response, sdk_error)
        if bounded:
            response.read()
            return
        raw = bytearray()
        for chunk in _raw_chunks(response):
            raw += chunk
            if len(raw) > SUCCESS_MAX_BYTES:
                break
        _check_count(response, sdk_error, raw, codings)
        response.stream.close()  # body read to its end: the connection goes back to the pool
        _counted_body(response, sdk_error, raw, codings)
    except BaseException:
        close_now(response)
        raise


async def read_body_async(response: httpx.Response, sdk_error: SDKErrorClass) -> None:
    """Async twin of :func:`read_body`."""
    try:
        codings, bounded = _library_reads(response, sdk_error)
        if bounded:
            await response.aread()
            return
        raw = bytearray()
        async for chunk in _raw_chunks_async(response):
            raw += chunk
            if len(raw) > SUCCESS_MAX_BYTES:
                break
        _check_count(response, sdk_error, raw, codings)
        await _uncancellable(response.stream.aclose)
        _counted_body(response, sdk_error, raw, codings)
    except BaseException:
        await close_now_async(response)
        raise


def _target_sdk_error(module: str) -> SDKErrorClass:
    """The ``errors.SDKError`` of the target that ``module`` (a ``__name__``:
    ``<target>.utils.<name>``) belongs to, imported when first called."""

    def sdk_error(message: str, response: Any, body: str) -> Exception:
        return importlib.import_module(module.rsplit(".", 2)[0] + ".errors").SDKError(message, response, body)

    return sdk_error


def body_text(response: httpx.Response, module: str) -> str:
    """The text of a response that upstream's ``utils.stream_to_text`` reads whole (generated
    streaming methods read every non-event-stream answer with it; ``responses.create`` and
    ``audio.speech`` on 3.x parse their ``200 application/json`` answer from it).

    A body already read: upstream's ``"".join(response.iter_text())``. An unread success body
    (:func:`success_body`): read by :func:`read_body` (per-read timeout only, within
    :data:`SUCCESS_MAX_BYTES`), then the same text. Any other unread body (e.g. a stream answered
    ``200 text/html``, which upstream read to its end however slowly it came): read as an error
    body (:func:`read_error_body`, bounded in bytes, decoded size and time), with the note of
    :func:`error_body` when it is incomplete.

    Args:
        response: The response.
        module: ``__name__`` of the calling module of the target (its ``utils.serializers``),
            which names the target whose ``SDKError`` a success body over the bound raises.

    Raises:
        SDKError: the target's, for a success body over :data:`SUCCESS_MAX_BYTES`.
    """
    if _unread(response):
        if not success_body(response):
            return error_body(response, read_error_body(response))
        read_body(response, _target_sdk_error(module))
    return "".join(response.iter_text())


async def body_text_async(response: httpx.Response, module: str) -> str:
    """Async twin of :func:`body_text`."""
    if _unread(response):
        if not success_body(response):
            return error_body(response, await read_error_body_async(response))
        await read_body_async(response, _target_sdk_error(module))
    return "".join([chunk async for chunk in response.aiter_text()])


STREAM_DECODE_PIECE = 64 * 1024
"""Most bytes one decoding step of a content-coded event stream yields, before the event scan
(about: see :mod:`mistralai_patched.codings` for br and for zstd with ``zstandard``)."""


class _Layer:
    """One content coding of a stream undone incrementally (a :class:`codings.Decoder`), about
    ``STREAM_DECODE_PIECE`` bytes per step; data that does not decode raises the HTTP library's
    ``DecodingError``, as the library's own read does."""

    __slots__ = ("decoder",)

    def __init__(self, factory: codings_module.Factory) -> None:
        self.decoder = factory()

    def pieces(self, data: bytes, response: httpx.Response) -> Iterator[bytes]:
        return self._out(response, self.decoder.feed, data)

    def rest(self, response: httpx.Response) -> Iterator[bytes]:
        """At the end of the body: what the layer held back (a one-byte deflate body)."""
        return self._out(response, self.decoder.end)

    def _out(self, response: httpx.Response, first: Callable[..., None], *args: bytes) -> Iterator[bytes]:
        try:
            first(*args)
            while True:
                out = self.decoder.take(STREAM_DECODE_PIECE)
                if not out:
                    return
                yield out
        except self.decoder.errors as exc:
            raise http_library(response).DecodingError(str(exc), request=response.request) from exc


def _layer_pieces(layer: _Layer, pieces: Iterator[bytes], response: httpx.Response) -> Iterator[bytes]:
    for piece in pieces:
        yield from layer.pieces(piece, response)


def _through(layers: List[_Layer], chunk: bytes, response: httpx.Response) -> Iterator[bytes]:
    """``chunk`` through every layer, lazily: no layer yields more than one piece at a time."""
    pieces: Iterator[bytes] = iter((chunk,))
    for layer in layers:
        pieces = _layer_pieces(layer, pieces, response)
    return pieces


def _rest(layers: List[_Layer], response: httpx.Response) -> Iterator[bytes]:
    for i, layer in enumerate(layers):
        for piece in layer.rest(response):
            yield from _through(layers[i + 1 :], piece, response)


def _decoded(chunks: Iterator[bytes], steps: List[codings_module.Factory], response: httpx.Response) -> Iterator[bytes]:
    """The decoded body of a content-coded stream read from its raw ``chunks``, in bounded
    pieces; ``steps``: from :func:`_plan`."""
    layers = [_Layer(factory) for factory in reversed(steps)]
    for chunk in chunks:
        yield from _through(layers, chunk, response)
    yield from _rest(layers, response)


async def _decoded_async(
    chunks: AsyncIterator[bytes], steps: List[codings_module.Factory], response: httpx.Response
) -> AsyncIterator[bytes]:
    """Async twin of :func:`_decoded`."""
    layers = [_Layer(factory) for factory in reversed(steps)]
    async for chunk in chunks:
        for piece in _through(layers, chunk, response):
            yield piece
    for piece in _rest(layers, response):
        yield piece


class EventStreamResponse:
    """The streamed response as upstream's event-stream generator sees it.

    Upstream's ``stream_events``/``stream_events_async`` (mistralai 2.10.1 and 3.7.0, all
    targets) close the response as soon as they read the ``[DONE]`` sentinel, before the end of
    the body has been read, so the connection is discarded: every successful streamed call opens a
    new TCP (and, against the real API, TLS) connection. ``EventStream``/``EventStreamAsync``
    (rendered from our template) hand the generator this wrapper instead of the response and pull
    events through :meth:`next_event` / :meth:`anext_event`, which decide how the response ends:

    - the generator finished (sentinel or end of body): drain the rest of the body raw within
      ``DRAIN_MAX_BYTES`` and ``DRAIN_TIMEOUT_MS`` (a hard deadline), then close, so the
      connection goes back to the pool; over the bound or past the deadline, close at once. A
      content-coded stream is decoded here (:mod:`mistralai_patched.codings`), in bounded
      pieces, and its rest is drained raw (never decoded); one that cannot be decoded within a
      bound here (br with ``brotli`` older than 1.2) is decoded by the HTTP library and closed at
      once at the end of the events;
    - the generator raised (decode error, read error, cancellation, ``KeyboardInterrupt``): close
      at once and re-raise;
    - the generator is closed from outside an event pull (garbage collection, an early exit from
      ``with``/``async with`` followed by the stream's own close): close at once. Never waits for
      a generation to finish;
    - the ``EventStream`` is garbage-collected unclosed: :meth:`collected` closes the response.

    Attribute access other than the byte iterators and close methods goes to the response.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks: Any = None
        self._raw = False
        self._pulling = False
        try:
            self._loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.response, name)

    def iter_bytes(self, chunk_size: Optional[int] = None) -> Iterator[bytes]:
        """The body's bytes for upstream's generator: the raw stream when it is not
        content-encoded (so the rest can be drained raw later); a content-coded one decoded here
        from the raw stream in pieces of about ``STREAM_DECODE_PIECE`` bytes (httpx 0.28 decodes
        each received chunk whole, and turns a few hundred bytes of ``gzip, gzip`` into hundreds
        of MiB at once); ``response.iter_bytes()`` when it cannot be decoded within a bound here
        or a chunk size is asked for."""
        return self._body(chunk_size, _raw_chunks, _decoded, self.response.iter_bytes)

    def aiter_bytes(self, chunk_size: Optional[int] = None) -> AsyncIterator[bytes]:
        """Async twin of :meth:`iter_bytes`."""
        return self._body(chunk_size, _raw_chunks_async, _decoded_async, self.response.aiter_bytes)

    def _body(self, chunk_size: Optional[int], raw: Any, decoded: Any, library_bytes: Any) -> Any:
        steps = _plan(self.response, _content_codings(self.response))
        self._raw = chunk_size is None and _unread(self.response) and steps is not None
        if not self._raw:
            self._chunks = library_bytes(chunk_size)
            return self._chunks
        self._chunks = raw(self.response)
        return decoded(self._chunks, steps, self.response) if steps else self._chunks

    def close(self) -> None:
        """Called by upstream's generator: deferred during an event pull, else close at once."""
        if not self._pulling:
            close_now(self.response)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if not self._pulling:
            await close_now_async(self.response)

    def next_event(self, events: Iterator[T]) -> T:
        """``next(events)``; releases the response when the events end, closes it on an error.

        Raises:
            StopIteration: when the events end (after the response was released).
            BaseException: whatever the generator raised, after the response was closed at once.
        """
        self._pulling = True
        try:
            return next(events)
        except StopIteration:
            self._pulling = False
            self._drain_rest()
            raise
        except BaseException:
            self._pulling = False
            close_now(self.response)
            raise
        finally:
            self._pulling = False

    async def anext_event(self, events: Any) -> Any:
        """Async twin of :meth:`next_event` (``StopAsyncIteration`` at the end). On cancellation
        the response is closed at once (shielded) and the cancellation re-raised."""
        self._pulling = True
        try:
            return await events.__anext__()
        except StopAsyncIteration:
            self._pulling = False
            await self._drain_rest_async()
            raise
        except BaseException:
            self._pulling = False
            await close_now_async(self.response)
            raise
        finally:
            self._pulling = False

    def _drain_rest(self) -> None:
        if self.response.is_closed:
            return
        if self._raw and self._chunks is not None:
            deadline = time.monotonic() + _deadline_s(self.response, None)
            try:
                _read_raw(self.response, self._chunks, DRAIN_MAX_BYTES, deadline, False)
            except BaseException:
                close_now(self.response)
                raise
        # Read to its end, the connection goes back to the pool; otherwise it is discarded.
        close_now(self.response)

    async def _drain_rest_async(self) -> None:
        if self.response.is_closed:
            return
        if self._raw and self._chunks is not None:
            deadline = time.monotonic() + _deadline_s(self.response, None)
            try:
                await _read_raw_async(self._chunks, DRAIN_MAX_BYTES, deadline, False)
            except BaseException:
                await close_now_async(self.response)
                raise
        await close_now_async(self.response)

    def collected(self, owner: Any, is_async: bool) -> None:
        """Called from ``EventStream.__del__``/``EventStreamAsync.__del__``: a stream dropped
        without being closed gives its connection back. Sync: the response is closed at once.
        Async: closed on the event loop that made it when that loop still runs (the close is
        scheduled; it cannot be awaited here); when that loop is closed, its client's connection
        pool is gone with it. Either way a ``ResourceWarning`` names the call, as httpx and
        aiohttp warn for unclosed clients.
        """
        response = self.response
        if response.is_closed:
            return
        try:
            url = str(response.request.url)
        except RuntimeError:
            url = "?"
        warnings.warn(
            f"{type(owner).__name__} for {url} was garbage-collected without being closed; its "
            "response was closed to give its connection back (use 'with' / 'async with')",
            ResourceWarning,
            stacklevel=2,
            source=owner,
        )
        if not is_async:
            close_now(response)
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(lambda: loop.create_task(close_now_async(response)))
            except RuntimeError:  # the loop closed meanwhile
                pass


_EVENT_PREFIX_BYTES = 1024


class EventBounds:
    """The bounds of one successful event stream, checked by upstream's event scan (rendered from
    our templates: ``<target>/utils/eventstreaming.py``, and ``utils/jsonl.py`` on 3.x, where a
    block is one NDJSON line) after each chunk of the body, on the block still waiting for the
    boundary that ends it:

    - size: a block over ``EVENT_MAX_BYTES`` bytes ends the stream with the target's
      ``SDKError`` (status 200, the block's first 1,024 bytes as its body);
    - time: a block still not ended the request's read timeout (upstream's ``timeout_ms``) after
      its first byte arrived ends the stream with the HTTP library's ``ReadTimeout``: what httpx
      raises when no byte comes for that long, here for bytes that trickle in without ever ending
      an event. The check runs when a chunk arrives, so a block that then stalls is cut by the
      per-read timeout itself: at most twice the read timeout after its first byte. No time
      bound when the request has no read timeout.

    Upstream (mistralai 2.10.1 and 3.7.0, every target) has neither: a block that never ends is
    buffered until the server stops. Either error closes the response at once
    (:meth:`EventStreamResponse.next_event`). Complete blocks, however many, are never bounded.
    """

    __slots__ = ("response", "sdk_error", "max_bytes", "timeout_s", "since")

    def __init__(self, response: Any, module: str) -> None:
        """``response``: what upstream's generator reads (an :class:`EventStreamResponse`, or a
        response); ``module``: the ``__name__`` of the target's module that scans
        (``utils.eventstreaming`` or ``utils.jsonl``), which names the target."""
        self.response = response.response if isinstance(response, EventStreamResponse) else response
        self.sdk_error = _target_sdk_error(module)
        self.max_bytes = EVENT_MAX_BYTES
        self.timeout_s = _read_timeout_s(self.response)
        self.since = 0.0

    def pending(self, block: bytearray, fresh: bool) -> None:
        """Check the block waiting for its end after a chunk was added. ``fresh``: the block
        began in this chunk (its first byte arrived now).

        Raises:
            SDKError: the target's, when the block is over ``EVENT_MAX_BYTES``.
            ReadTimeout: the response's HTTP library's, when the block began more than the read
                timeout ago.
        """
        if len(block) > self.max_bytes:
            raise self._over_bound(block)
        if self.timeout_s is None:
            return
        now = time.monotonic()
        if fresh:
            self.since = now
        elif now - self.since > self.timeout_s:
            library = http_library(self.response)
            raise library.ReadTimeout(
                f"event stream: an event still not ended {self.timeout_s:g} s (the read timeout) after "
                "its first byte; the response was closed",
                request=self.response.request,
            )

    def _over_bound(self, block: bytearray) -> BaseException:
        shown = bytes(block[:_EVENT_PREFIX_BYTES]).decode("utf-8", "replace")
        return self.sdk_error(
            f"event stream: an event over {self.max_bytes} bytes "
            "(mistralai_patched.release.EVENT_MAX_BYTES); the response was closed",
            self.response,
            f"{shown} [mistralai-patched: event cut, first {_EVENT_PREFIX_BYTES} bytes shown]",
        )
