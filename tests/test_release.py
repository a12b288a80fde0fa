"""Unit tests of mistralai_patched.release: bound, read failure, deadline, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)
import pytest

from conftest import TrackedBody
from mistralai_patched import release


def _response(stream: object, status: int = 500, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, stream=stream, request=httpx.Request("POST", "http://x"))


def test_small_body_is_read_and_closed() -> None:
    body = TrackedBody(b"hello", pieces=3)
    res = _response(body)
    result = release.read_error_body(res)
    assert result.complete and result.body == b"hello" and res.is_closed and body.read_to_end
    assert release.error_body(res, result) == "hello"


def test_over_bound_closes_at_once_and_keeps_prefix() -> None:
    body = TrackedBody(b"a" * 1000, pieces=10)
    res = _response(body)
    result = release.read_error_body(res, max_bytes=250)
    assert not result.complete and result.reason == "over bound" and result.body == b"a" * 250
    assert res.is_closed and body.closed and not body.read_to_end
    text = release.error_body(res, result)
    assert text.startswith("a" * 250) and "over bound" in text


class _Failing(httpx.SyncByteStream, httpx.AsyncByteStream):
    closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"part"
        raise httpx.ReadError("reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"part"
        raise httpx.ReadError("reset by peer")

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def test_read_error_closes_and_never_raises() -> None:
    stream = _Failing()
    res = _response(stream)
    result = release.read_error_body(res)
    assert not result.complete and result.reason == "ReadError" and stream.closed
    assert release.error_body(res, result).startswith("part")


def test_error_body_is_never_empty_when_incomplete() -> None:
    res = _response(_Failing(), **{"content-encoding": "gzip"})
    result = release.read_error_body(res)
    assert release.error_body(res, result)  # upstream's SDKError would call .text on ""


def test_already_read_response_is_left_as_is() -> None:
    res = httpx.Response(400, content=b"done", request=httpx.Request("GET", "http://x"))
    res.read()
    assert release.drain(res) == release.DrainResult(True, b"done")


class _Stalled(httpx.AsyncByteStream):
    closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(3600)
        yield b"never"

    async def aclose(self) -> None:
        self.closed = True


async def test_async_deadline_is_hard() -> None:
    stream = _Stalled()
    res = _response(stream)
    result = await release.drain_async(res, timeout_ms=50)
    assert not result.complete and result.reason == "deadline" and stream.closed


async def test_async_cancellation_closes_and_propagates() -> None:
    stream = _Stalled()
    res = _response(stream)
    task = asyncio.ensure_future(release.drain_async(res, timeout_ms=60_000))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed and res.is_closed


def test_deadline_capped_by_read_timeout() -> None:
    req = httpx.Request("GET", "http://x", extensions={"timeout": {"read": 0.1}})
    res = httpx.Response(500, stream=TrackedBody(), request=req)
    assert release._deadline_s(res, None) == 0.1
    assert release._deadline_s(res, 50) == 0.05


class _SlowClose(httpx.AsyncByteStream):
    """A body whose close takes 100 ms (as a close that gives a connection back may await), and
    may fail."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.close_finished = False

    async def __aiter__(self) -> Any:
        yield b"x"

    async def aclose(self) -> None:
        await asyncio.sleep(0.1)
        self.close_finished = True
        if self.fails:
            raise RuntimeError("close failed")


@pytest.mark.parametrize("how", ["task_cancel", "cancel_twice", "asyncio_timeout", "wait_for"])
async def test_close_now_async_is_not_cut_short_by_asyncio_cancellation(how: str) -> None:
    """asyncio's own cancellation (which anyio's shield does not hold off) waits for the close to
    finish and is then re-raised: the connection is given back before the caller unwinds."""
    stream = _SlowClose()
    response = httpx.Response(200, stream=stream)
    if how == "asyncio_timeout":
        if not hasattr(asyncio, "timeout"):
            pytest.skip("asyncio.timeout is Python >= 3.11")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await release.close_now_async(response)
    elif how == "wait_for":
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(release.close_now_async(response), 0.02)
    else:
        task = asyncio.ensure_future(release.close_now_async(response))
        await asyncio.sleep(0.02)
        task.cancel()
        if how == "cancel_twice":
            await asyncio.sleep(0.02)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stream.close_finished and response.is_closed


async def test_close_now_async_keeps_the_cancellation_when_the_close_fails() -> None:
    response = httpx.Response(200, stream=_SlowClose(fails=True))
    task = asyncio.ensure_future(release.close_now_async(response))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await release.close_now_async(httpx.Response(200, stream=_SlowClose(fails=True)))  # swallowed, as before


# ------------------------------------------------- gzip/deflate event streams, decoded in pieces


def _coded(body: bytes, codings: str) -> bytes:
    """``body`` in ``codings`` (applied in order): gzip, deflate, raw-deflate, br, zstd, or
    zstd-frames (the body in two zstd frames, one after the other)."""
    import zlib

    from mistralai_patched.bounds import GZIP_WBITS, coded, compressed

    wbits = {"gzip": GZIP_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}
    for coding in codings.split(","):
        if coding in wbits:
            body = compressed([body], wbits[coding])
        elif coding == "zstd-frames":
            body = coded([body[: len(body) // 2]], "zstd") + coded([body[len(body) // 2 :]], "zstd")
        else:
            body = coded([body], coding)
    return body


def _coding_header(codings: str) -> str:
    names = {"raw-deflate": "deflate", "zstd-frames": "zstd"}
    return ", ".join(names.get(c, c) for c in codings.split(","))


_BODY = b"data: " + b"z" * 300_000 + b"\n\n" + bytes(range(256)) * 40

_STEP_MOST = {"br": 2 * release.STREAM_DECODE_PIECE}
"""Most bytes of one step where it is not ``STREAM_DECODE_PIECE``: brotli's output limit lets its
buffer reach about 1.5 times the limit; ``zstandard`` (httpx on 2.x) has no output limit, and is
fed in slices that give at most 640 KiB more (mistralai_patched.codings)."""
if not hasattr(httpx._decoders, "ZstdDecompressor"):
    _STEP_MOST["zstd"] = _STEP_MOST["zstd-frames"] = release.STREAM_DECODE_PIECE + 640 * 1024


@pytest.mark.parametrize(
    "codings", ["gzip", "deflate", "raw-deflate", "br", "zstd", "zstd-frames", "gzip,gzip", "deflate,gzip", "br,zstd"]
)
@pytest.mark.parametrize("split", [1, 7, 1 << 20])
def test_stream_decoding_gives_the_body_in_bounded_pieces(codings: str, split: int) -> None:
    """The fork's decoding of a content-coded event stream (``EventStreamResponse.iter_bytes``
    and ``aiter_bytes``) gives the whole body, whatever the network chunks (one byte at a time
    included: the first byte alone does not tell zlib-wrapped from raw deflate), and never a
    piece over ``STREAM_DECODE_PIECE`` (br: twice that)."""
    raw = _coded(_BODY, codings)
    chunks = [raw[i : i + split] for i in range(0, len(raw), split)]
    header = _coding_header(codings)
    most = _STEP_MOST.get(codings.split(",")[0], release.STREAM_DECODE_PIECE)

    class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from chunks

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

    def response() -> Any:
        return release.EventStreamResponse(_response(Chunks(), 200, **{"content-encoding": header}))

    pieces = list(response().iter_bytes())

    async def read() -> Any:
        return [piece async for piece in response().aiter_bytes()]

    for got in (pieces, asyncio.run(read())):
        assert b"".join(got) == _BODY
        assert max(map(len, got)) <= most


def test_stream_decoding_error_is_the_libraries_decoding_error() -> None:
    garbage = _response(httpx.ByteStream(b"not gzip at all"), 200, **{"content-encoding": "gzip"})
    wrapper = release.EventStreamResponse(garbage)
    with pytest.raises(httpx.DecodingError):
        list(wrapper.iter_bytes())
