"""mistralai_patched.codings: content codings undone within a bound give the HTTP library's bytes.

Differential against the line's HTTP library (httpx2 on 3.x, httpx on 2.x): for each coding the
library decodes (gzip, deflate, br, zstd; brotli, backports.zstd and zstandard are test
requirements), a body decoded by the fork within a bound is the library's ``content``, and data
the library refuses (garbage, a zstd frame cut short) is refused. Then the bound itself: no step
gives more than the module's table says, for a body that decodes to 64 MiB.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any, List, Optional

import pytest

from conftest import httpx  # the line's HTTP library
from mistralai_patched import codings
from mistralai_patched.bounds import GZIP_WBITS, coded, compressed

MIB = 1024 * 1024
BODIES = {
    "empty": b"",
    "short": b'{"message": "rate limited"}',
    "text": b"".join(b"line %d of a longer answer\n" % i for i in range(20_000)),
    "binary": bytes(range(256)) * 2000,
}


def _encode(body: bytes, coding: str) -> bytes:
    if coding == "deflate":
        return compressed([body], zlib.MAX_WBITS)
    if coding == "gzip":
        return compressed([body], GZIP_WBITS)
    return coded([body], coding)


def _library(raw: bytes, header: str) -> Optional[bytes]:
    """What the library makes of ``raw`` in ``Content-Encoding: header``: its content, or None
    when it raises its ``DecodingError``."""
    try:
        return httpx.Response(200, headers={"content-encoding": header}, content=raw).content
    except httpx.DecodingError:
        return None


def _fork(raw: bytes, header: str, strict: bool = True) -> Optional[bytes]:
    steps = codings.plan(httpx, [c.strip() for c in header.split(",")])
    assert steps is not None, f"{header}: not bounded here"
    decoded, cut = codings.decode_bounded(raw, steps, 256 * MIB, strict=strict)
    assert not cut
    return decoded


CASES = ["gzip", "deflate", "br", "zstd", "gzip, br", "zstd, gzip", "br, zstd"]


ZSTANDARD_LIBRARY = not hasattr(httpx._decoders, "ZstdDecompressor")
"""The line's library decodes zstd with ``zstandard`` (httpx on 2.x), not the standard API."""


@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize("header", CASES)
def test_a_body_decodes_to_the_librarys_content(header: str, name: str) -> None:
    """Every body decodes to itself, and to the library's content; except where httpx (2.x)
    fails: zstd with another coding (its ``MultiDecoder.flush`` feeds the ended zstandard
    decompressor ``b""``, which raises "cannot use a decompressobj multiple times"), which the
    fork decodes."""
    raw = BODIES[name]
    for coding in header.split(", "):
        raw = _encode(raw, coding)
    assert _fork(raw, header) == BODIES[name]
    library = _library(raw, header)
    if ZSTANDARD_LIBRARY and "zstd" in header and "," in header:
        assert library is None
    else:
        assert library == BODIES[name]


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_data_the_library_refuses_is_refused(coding: str) -> None:
    """Garbage in place of the body; a body followed by garbage (zstd reads it as a next frame)."""
    cases = [b"this is not compressed at all, not even close", _encode(BODIES["text"], coding) + b"\x00garbage"]
    for raw in cases:
        library = _library(raw, coding)
        if library is None:
            assert _fork(raw, coding) is None
        else:
            assert _fork(raw, coding) == library


def test_zstd_frames_and_a_cut_frame_as_the_library() -> None:
    """Two frames one after the other decode to both parts; a frame cut short is the library's
    ``DecodingError`` for a whole body, and its decoded part for a prefix (``strict=False``)."""
    two = _encode(b"first part, ", "zstd") + _encode(b"second part", "zstd")
    assert _fork(two, "zstd") == _library(two, "zstd") == b"first part, second part"
    cut = _encode(BODIES["text"], "zstd")[:-4]
    assert _library(cut, "zstd") is None and _fork(cut, "zstd") is None
    prefix = _fork(cut, "zstd", strict=False)
    assert prefix is not None and BODIES["text"].startswith(prefix)


def test_codings_the_library_does_not_decode_are_left_as_they_are() -> None:
    """``x-unknown`` is skipped, as the library skips it; ``identity`` is not a coding."""
    raw = _encode(b"hello", "gzip")
    steps = codings.plan(httpx, ["x-unknown", "gzip"])
    assert steps is not None and len(steps) == 1
    assert codings.decode_bounded(raw, steps, MIB) == (b"hello", False)
    assert codings.plan(httpx, ["x-unknown"]) == []


def test_more_codings_than_the_library_undoes_are_left_to_it() -> None:
    """httpx2 refuses more than 5 codings (its ``DecodingError``); httpx undoes any number."""
    most = getattr(getattr(httpx._decoders, "MultiDecoder", None), "max_decode_links", None)
    steps = codings.plan(httpx, ["gzip"] * 6)
    assert (steps is None) if most == 5 else (steps is not None and len(steps) == 6)


def _bomb(coding: str, mib: int) -> bytes:
    return coded(itertools.repeat(b"\0" * MIB, mib), coding)


def _steps(decoder: codings.Decoder, raw: bytes, limit: int, feed: int) -> List[int]:
    """Sizes of the steps of ``decoder`` over ``raw`` fed ``feed`` bytes at a time."""
    sizes = []
    for i in range(0, len(raw), feed):
        decoder.feed(raw[i : i + feed])
        while True:
            out = decoder.take(limit)
            if not out:
                break
            sizes.append(len(out))
    return sizes


def _zstandard() -> Any:
    return pytest.importorskip("zstandard", reason="zstandard is a test requirement (tests/requirements.txt)")


@pytest.mark.parametrize("decoder", ["gzip", "br", "zstd", "zstandard"])
@pytest.mark.parametrize("feed", [1 << 20, 7])
def test_no_step_gives_more_than_the_bound(decoder: str, feed: int) -> None:
    """A few KiB that decode to 64 MiB, undone with a 64 KiB limit per step: every step within
    the module's table (zlib and zstd: the limit; br: 1.5 times it; zstd with ``zstandard``,
    which has no output limit: the limit plus 640 KiB), and all 64 MiB come out."""
    limit = 64 * 1024
    if decoder == "gzip":
        raw, made, most = compressed(itertools.repeat(b"\0" * MIB, 64)), codings._Zlib("gzip"), limit
    elif decoder == "br":
        raw, made, most = _bomb("br", 64), codings._Brotli(httpx._decoders.brotli), 3 * limit // 2
    elif decoder == "zstd":
        from backports import zstd

        raw, made, most = _bomb("zstd", 64), codings._Zstd(zstd.ZstdDecompressor, zstd.ZstdError), limit
    else:
        raw, made, most = _bomb("zstd", 64), codings._Zstandard(_zstandard()), limit + 640 * 1024
    sizes = _steps(made, raw, limit, feed)
    assert sum(sizes) == 64 * MIB
    assert max(sizes) <= most, max(sizes)


def test_a_library_whose_decoders_cannot_be_read_leaves_other_codings_to_it() -> None:
    """Without a readable ``_decoders.SUPPORTED_DECODERS``, gzip and deflate are still undone here
    and any other coding is left to the library (None), not skipped."""

    class Library:
        __name__ = "not-a-library"

    assert codings.plan(Library, ["gzip"]) is not None  # type: ignore[arg-type]
    assert codings.plan(Library, ["br"]) is None  # type: ignore[arg-type]
