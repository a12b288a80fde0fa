"""The package index's own view of upstream: which releases it has, and each sdist's sha256 as the
index lists it (the simple repository API, JSON per PEP 691 or HTML per PEP 503)."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import RegenError
from .sdist import cache_dir, cached_sdist, pip_environment

DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 60.0
FINAL_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Release:
    """One upstream release's sdist as the index lists it."""

    version: str
    filename: str
    url: str
    sha256: str

    @property
    def key(self) -> Tuple[int, ...]:
        """The version as a tuple of ints, for ordering (final X.Y.Z releases only)."""
        return version_key(self.version)


def version_key(version: str) -> Tuple[int, ...]:
    """``"2.10.1"`` → ``(2, 10, 1)``.

    Raises:
        RegenError: not a final ``X.Y.Z`` release number.
    """
    found = FINAL_VERSION.match(version)
    if not found:
        raise RegenError(
            f"{version!r} is not a final release number X.Y.Z (pre-releases and line names are not "
            "accepted here). Nothing was written."
        )
    return tuple(int(part) for part in found.groups())


def index_url(explicit: Optional[str] = None) -> str:
    """The index to ask: ``explicit`` (``--index-url``), else ``PIP_INDEX_URL`` (or uv's
    equivalent, see :func:`.sdist.pip_environment`), else PyPI's simple API. pip.conf is not
    read here: name a private index with ``--index-url`` or ``PIP_INDEX_URL``."""
    configured = pip_environment().get("PIP_INDEX_URL", "").split()
    return (explicit or (configured[0] if configured else DEFAULT_INDEX)).rstrip("/")


def _remedy(url: str) -> str:
    return (
        f"What to do: make {url} reachable from this machine (or name a reachable index with "
        "--index-url or PIP_INDEX_URL) and run again. Nothing was written."
    )


def list_releases(name: str, index: Optional[str] = None) -> List[Release]:
    """Every final release of ``name`` with an sdist on the index, oldest first; yanked files and
    pre-releases are left out.

    Args:
        name: The distribution (``mistralai``).
        index: The simple API's base URL (default: :func:`index_url`).

    Raises:
        RegenError: the index cannot be reached within 60 s, does not know ``name``, or answers
            with something that is neither the JSON nor the HTML simple API.
    """
    base = index_url(index)
    url = f"{base}/{name}/"
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
            "User-Agent": "mistralai-patched-regenerate",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            kind = response.headers.get("Content-Type", "")
            body = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RegenError(f"Could not list the releases of {name} at {url}: {exc}.\n{_remedy(base)}") from exc
    files = _json_files(body, url) if "json" in kind else _html_files(body.decode("utf-8", "replace"), url)
    by_version: Dict[str, Release] = {}
    for filename, file_url, sha256, yanked in files:
        found = re.fullmatch(rf"{re.escape(name)}-(.+)\.tar\.gz", filename, flags=re.IGNORECASE)
        if yanked or not found or not FINAL_VERSION.match(found.group(1)) or not sha256:
            continue
        by_version[found.group(1)] = Release(found.group(1), filename, file_url, sha256.lower())
    return sorted(by_version.values(), key=lambda r: r.key)


def _json_files(body: bytes, url: str) -> List[Tuple[str, str, str, bool]]:
    try:
        data = json.loads(body)
        return [
            (
                f["filename"],
                urllib.parse.urljoin(url, f["url"]),
                (f.get("hashes") or {}).get("sha256", ""),
                bool(f.get("yanked")),
            )
            for f in data["files"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegenError(f"{url} answered with JSON that is not the simple API's ({exc}). {_remedy(url)}") from exc


def _html_files(text: str, url: str) -> List[Tuple[str, str, str, bool]]:
    found = []
    for attrs, label in re.findall(r"<a\s([^>]*)>([^<]*)</a>", text, flags=re.IGNORECASE):
        href = re.search(r'href\s*=\s*"([^"]*)"', attrs)
        if not href:
            continue
        link = urllib.parse.urljoin(url, html.unescape(href.group(1)))
        digest = re.search(r"#sha256=([0-9a-fA-F]{64})", link)
        found.append(
            (
                html.unescape(label).strip(),
                link.split("#")[0],
                digest.group(1) if digest else "",
                "data-yanked" in attrs,
            )
        )
    return found


def fetch_release(release: Release) -> Path:
    """The verified sdist of ``release`` from the cache (:func:`.sdist.cache_dir`), downloading it
    from the URL the index lists when it is not there. The file is kept only once its sha256
    matches the index's.

    Raises:
        RegenError: the download failed or took over 60 s without data, the sha256 differs from
            the index's, or ``MISTRALAI_PATCHED_OFFLINE`` is set and the file is not cached.
    """
    found = cached_sdist(release.filename, release.sha256, release.filename)
    if found is not None:
        return found
    cached = cache_dir() / release.filename
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = cached.with_name(f"{cached.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(release.url, headers={"User-Agent": "mistralai-patched-regenerate"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, part.open("wb") as out:
            for block in iter(lambda: response.read(1 << 16), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != release.sha256:
            raise RegenError(
                f"{release.url} has sha256 {digest.hexdigest()}, but the index lists "
                f"{release.sha256}: the file is not the one the index describes. Not used."
            )
        os.replace(part, cached)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RegenError(f"Could not download {release.url}: {exc}.") from exc
    finally:
        part.unlink(missing_ok=True)
    return cached
