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
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Optional, Tuple, TypeVar

import anyio

if TYPE_CHECKING:  # annotations only: the library at run time is the response's own
    import httpx

__all__ = [
    "DRAIN_MAX_BYTES",
    "DRAIN_TIMEOUT_MS",
    "DrainResult",
    "drain",
    "drain_async",
    "release",
    "release_async",
    "close_now",
    "close_now_async",
    "error_body",
    "EventStreamResponse",
    "http_library",
]

T = TypeVar("T")

DRAIN_MAX_BYTES: int = 64 * 1024
"""Bound, in bytes received from the network, on the body read to release a response."""

DRAIN_TIMEOUT_MS: int = 5_000
"""Upper bound, in ms, on the time spent draining one response; the request's own read timeout
applies when it is shorter."""


class _DrainAborted(Exception):
    """Raised inside a bounded stream to stop ``Response.read()`` (internal)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DrainResult:
    """What a drain read.

    Attributes:
        complete: True when the body was read to its end; the connection went back to the pool
            and ``response.content`` / ``response.text`` are available.
        body: The body bytes as received (decoded when ``complete``; the raw, possibly
            content-encoded prefix when not), at most ``DRAIN_MAX_BYTES`` of it when incomplete.
        reason: Why the drain stopped early (``"over bound"``, ``"deadline"``, an exception type
            name, ``"cancelled"``), ``"already closed"``, or ``""`` when complete.
    """

    complete: bool
    body: bytes
    reason: str = ""


class _Budget:
    """Byte and time budget shared by the sync and async bounded streams."""

    def __init__(self, max_bytes: int, deadline: float) -> None:
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.prefix = bytearray()
        self.received = 0

    def take(self, chunk: bytes) -> None:
        self.received += len(chunk)
        room = self.max_bytes - len(self.prefix)
        if room > 0:
            self.prefix += chunk[:room]
        if self.received > self.max_bytes:
            raise _DrainAborted("over bound")
        if time.monotonic() > self.deadline:
            raise _DrainAborted("deadline")


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


class _BoundedSync:
    """Mixin: a sync byte stream that charges each chunk to a budget (see _bounded_streams)."""

    def __init__(self, inner: Any, budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._budget.take(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _BoundedAsync:
    """Mixin: the async twin of _BoundedSync."""

    def __init__(self, inner: Any, budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._budget.take(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.lru_cache(maxsize=None)
def _bounded_streams(library: ModuleType) -> Tuple[type, type]:
    """The bounded stream classes for one library: its ``Response.read()``/``aread()`` only
    iterate a stream that is an instance of its own ``SyncByteStream``/``AsyncByteStream``."""
    return (
        type("_BoundedSyncStream", (_BoundedSync, library.SyncByteStream), {}),
        type("_BoundedAsyncStream", (_BoundedAsync, library.AsyncByteStream), {}),
    )


def _deadline_s(response: httpx.Response, timeout_ms: Optional[int]) -> float:
    """Seconds the drain may take: ``timeout_ms`` capped by the request's read timeout."""
    budget = (DRAIN_TIMEOUT_MS if timeout_ms is None else timeout_ms) / 1000
    try:
        read_timeout = response.request.extensions.get("timeout", {}).get("read")
    except RuntimeError:  # a response built without a request
        read_timeout = None
    if read_timeout is not None:
        budget = min(budget, float(read_timeout))
    return max(budget, 0.0)


def _start(response: httpx.Response, max_bytes: Optional[int], timeout_ms: Optional[int]) -> Optional[_Budget]:
    if response.is_closed or response.is_stream_consumed:
        return None
    limit = DRAIN_MAX_BYTES if max_bytes is None else max_bytes
    return _Budget(limit, time.monotonic() + _deadline_s(response, timeout_ms))


def _closed_result(response: httpx.Response) -> DrainResult:
    try:
        return DrainResult(True, response.content)
    except http_library(response).ResponseNotRead:
        return DrainResult(False, b"", "already closed")


def drain(
    response: httpx.Response,
    *,
    max_bytes: Optional[int] = None,
    timeout_ms: Optional[int] = None,
) -> DrainResult:
    """Read the rest of a sync response's body within a bound, then make sure it is closed.

    Args:
        response: A response from ``httpx.Client.send(..., stream=True)`` (or an already read
            one, which is left as it is).
        max_bytes: Bound on bytes received from the network; default ``DRAIN_MAX_BYTES``.
        timeout_ms: Bound on the drain's duration in ms, checked between chunks; default
            ``DRAIN_TIMEOUT_MS``, capped by the request's read timeout (each single read is
            bounded by that read timeout, as in httpx).

    Returns:
        A ``DrainResult``. When complete, the connection went back to the pool.

    Raises:
        BaseException: ``KeyboardInterrupt``/``SystemExit`` (and other non-``Exception``
            errors) are re-raised after the response is closed at once. Ordinary read errors
            are not raised: they end the drain and the response is closed.
    """
    budget = _start(response, max_bytes, timeout_ms)
    if budget is None:
        close_now(response)
        return _closed_result(response)
    inner = response.stream
    response.stream = _bounded_streams(http_library(response))[0](inner, budget)
    try:
        body = response.read()
        return DrainResult(True, body)
    except _DrainAborted as aborted:
        reason = aborted.reason
    except Exception as exc:  # read failed: the connection cannot be reused
        reason = type(exc).__name__
    except BaseException:
        response.stream = inner
        close_now(response)
        raise
    response.stream = inner
    close_now(response)
    return DrainResult(False, bytes(budget.prefix), reason)


async def drain_async(
    response: httpx.Response,
    *,
    max_bytes: Optional[int] = None,
    timeout_ms: Optional[int] = None,
) -> DrainResult:
    """Async twin of :func:`drain` for responses from ``httpx.AsyncClient.send``.

    The drain deadline is enforced as a hard timeout (``anyio.fail_after``), not only between
    chunks. On cancellation (``asyncio.CancelledError``) the response is closed at once and the
    cancellation is re-raised.
    """
    budget = _start(response, max_bytes, timeout_ms)
    if budget is None:
        await close_now_async(response)
        return _closed_result(response)
    inner = response.stream
    response.stream = _bounded_streams(http_library(response))[1](inner, budget)
    try:
        with anyio.fail_after(max(budget.deadline - time.monotonic(), 0.0)):
            body = await response.aread()
        return DrainResult(True, body)
    except _DrainAborted as aborted:
        reason = aborted.reason
    except TimeoutError:
        reason = "deadline"
    except Exception as exc:
        reason = type(exc).__name__
    except BaseException:
        response.stream = inner
        await close_now_async(response)
        raise
    response.stream = inner
    await close_now_async(response)
    return DrainResult(False, bytes(budget.prefix), reason)


def release(response: Optional[httpx.Response]) -> None:
    """Drain (bounded) and close a sync response the SDK will not return; ``None`` is ignored.

    Never raises an ordinary ``Exception``; see :func:`drain` for the rest.
    """
    if response is not None:
        drain(response)


async def release_async(response: Optional[httpx.Response]) -> None:
    """Async twin of :func:`release`."""
    if response is not None:
        await drain_async(response)


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
    """The error body text to put in an ``SDKError`` after a drain.

    Returns ``response.text`` when the body was read completely. Otherwise the received prefix,
    decoded as UTF-8 (with replacement) when the body is not content-encoded, followed by a note
    saying why it is incomplete. Never empty when incomplete, so upstream's ``SDKError`` (which
    falls back to ``raw_response.text`` for an empty body) cannot raise ``httpx.ResponseNotRead``.
    """
    if result.complete:
        return response.text
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    prefix = ""
    if encoding in ("", "identity"):
        prefix = result.body.decode(response.encoding or "utf-8", errors="replace")
    return f"{prefix}[mistralai-patched: error body incomplete ({result.reason}); connection closed]"


class EventStreamResponse:
    """The streamed response as upstream's event-stream generator sees it.

    Upstream's ``stream_events``/``stream_events_async`` (mistralai 2.10.1, all targets) close
    the response as soon as they read the ``[DONE]`` sentinel, before the end of the body has been
    read, so httpx discards the connection: every successful streamed call opens a new TCP (and,
    against the real API, TLS) connection. ``EventStream``/``EventStreamAsync`` (rendered from our
    template) hand the generator this wrapper instead of the ``httpx.Response`` and pull events
    through :meth:`next_event` / :meth:`anext_event`, which decide how the response ends:

    - the generator finished (sentinel or end of body): drain the rest of the body within
      ``DRAIN_MAX_BYTES`` (bytes after content decoding) and the drain deadline, then close, so
      the connection goes back to the pool; over the bound or past the deadline, close at once;
    - the generator raised (decode error, read error, cancellation, ``KeyboardInterrupt``): close
      at once and re-raise;
    - the generator is closed from outside an event pull (garbage collection, an early exit from
      ``with``/``async with`` followed by the stream's own close): close at once. Never waits for
      a generation to finish.

    Attribute access other than the byte iterators and close methods goes to the response.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks: Any = None
        self._pulling = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.response, name)

    def iter_bytes(self, chunk_size: Optional[int] = None) -> Iterator[bytes]:
        """``response.iter_bytes()``, kept so the rest of the body can be drained later."""
        self._chunks = self.response.iter_bytes(chunk_size)
        return self._chunks

    def aiter_bytes(self, chunk_size: Optional[int] = None) -> AsyncIterator[bytes]:
        """``response.aiter_bytes()``, kept so the rest of the body can be drained later."""
        self._chunks = self.response.aiter_bytes(chunk_size)
        return self._chunks

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

    def _budget(self) -> _Budget:
        return _Budget(DRAIN_MAX_BYTES, time.monotonic() + _deadline_s(self.response, None))

    def _drain_rest(self) -> None:
        if self.response.is_closed:  # end of body: httpx closed it and pooled the connection
            return
        if self._chunks is not None:
            budget = self._budget()
            try:
                for chunk in self._chunks:
                    budget.take(chunk)
            except Exception:  # over bound, deadline or read error: discard the connection
                pass
            except BaseException:
                close_now(self.response)
                raise
        close_now(self.response)

    async def _drain_rest_async(self) -> None:
        if self.response.is_closed:
            return
        if self._chunks is not None:
            budget = self._budget()
            try:
                with anyio.fail_after(max(budget.deadline - time.monotonic(), 0.0)):
                    async for chunk in self._chunks:
                        budget.take(chunk)
            except Exception:
                pass
            except BaseException:
                await close_now_async(self.response)
                raise
        await close_now_async(self.response)
