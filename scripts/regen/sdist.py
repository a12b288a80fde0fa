"""The pinned upstream sdist: download with pip into a cache outside the tree, verify by sha256,
extract, and read upstream's wheel layout and metadata."""

from __future__ import annotations

import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import RegenError


def cache_dir() -> Path:
    """Where downloaded sdists are kept: ``$MISTRALAI_PATCHED_CACHE`` or ~/.cache/mistralai-patched."""
    env = os.environ.get("MISTRALAI_PATCHED_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mistralai-patched"
    return base / "sdists"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# uv's index settings and the pip settings that mean the same (uv runs our build backend with its
# environment, but the download below is pip's): carried over only where pip's own is unset.
UV_TO_PIP = (
    ("UV_DEFAULT_INDEX", "PIP_INDEX_URL"),
    ("UV_INDEX_URL", "PIP_INDEX_URL"),
    ("UV_INDEX", "PIP_EXTRA_INDEX_URL"),
    ("UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"),
    ("UV_FIND_LINKS", "PIP_FIND_LINKS"),
    ("UV_INSECURE_HOST", "PIP_TRUSTED_HOST"),
)


def pip_environment(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for the ``pip download`` of the upstream sdist.

    pip reads its own configuration (pip.conf, ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, …).
    A build run by uv has uv's settings instead (``UV_DEFAULT_INDEX``, ``UV_INDEX_URL``,
    ``UV_INDEX``, ``UV_EXTRA_INDEX_URL``, ``UV_FIND_LINKS``, ``UV_INSECURE_HOST``): each is
    carried over to the pip variable of the same meaning when that one is unset, with the
    ``name=`` prefix of a named uv index dropped and lists joined by spaces, as pip reads them.

    Args:
        environ: The environment to start from (default ``os.environ``); it is not modified.
    """
    env = dict(os.environ if environ is None else environ)
    carried: Dict[str, List[str]] = {}
    for uv_name, pip_name in UV_TO_PIP:
        value = env.get(uv_name, "").strip()
        if not value or env.get(pip_name, "").strip():
            continue
        items = [
            item.split("=", 1)[1] if re.match(r"^[A-Za-z0-9_.-]+=", item) else item
            for item in re.split(r"[\s,]+", value)
            if item
        ]
        carried.setdefault(pip_name, [])
        carried[pip_name] += [i for i in items if i not in carried[pip_name]]
    if "PIP_INDEX_URL" in carried:  # pip has one default index: the first uv setting listed wins
        carried["PIP_INDEX_URL"] = carried["PIP_INDEX_URL"][:1]
    env.update({name: " ".join(items) for name, items in carried.items()})
    return env


def _download_remedy(name: str, version: str, sha256: Optional[str], cached: Path) -> str:
    pin = f" (sha256 {sha256})" if sha256 else ""
    return (
        "What to do: make the package index reachable from this machine, through pip's own "
        "configuration (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL; under uv, UV_DEFAULT_INDEX, "
        "UV_INDEX_URL, UV_INDEX and UV_EXTRA_INDEX_URL are passed on to pip where pip's are unset), "
        f"or download {name}-{version}.tar.gz{pin} on a machine that can reach it and place it at "
        f"{cached}; it is verified before use. Nothing was written."
    )


def cached_sdist(filename: str, sha256: Optional[str], release: str) -> Optional[Path]:
    """The sdist ``filename`` from the cache (:func:`cache_dir`) when it is there and its sha256 is
    ``sha256`` (any, when None); None when it has to be downloaded.

    Raises:
        RegenError: ``MISTRALAI_PATCHED_OFFLINE`` is set and it is not cached (``release`` names
            it in the message, e.g. ``mistralai==3.7.0``).
    """
    cached = cache_dir() / filename
    if cached.is_file() and (sha256 is None or _sha256_file(cached) == sha256):
        return cached
    if os.environ.get("MISTRALAI_PATCHED_OFFLINE"):
        raise RegenError(
            f"MISTRALAI_PATCHED_OFFLINE is set and {cached} is not cached, so the upstream sdist "
            f"{release} cannot be fetched. Unset it, or place the verified sdist there."
        )
    return None


def fetch_sdist(name: str, version: str, sha256: Optional[str]) -> Path:
    """Return the path of the verified upstream sdist, downloading it with pip if not cached.

    The download is ``python -m pip download --no-deps --no-binary :all:`` run by the current
    interpreter, so it honours the user's pip configuration (and uv's index settings, see
    :func:`pip_environment`). pip is one of our build requirements (pyproject.toml), so it is
    importable inside PEP 517 build isolation, where nothing else is. The file is cached under
    :func:`cache_dir` only once its sha256 matches.

    Raises:
        RegenError: pip is missing, cannot reach the index or find the release (the message
            names the command, pip's own error output and the remedy), the download took more
            than 10 minutes, or the sha256 differs from the pin.
    """
    cdir = cache_dir()
    fname = f"{name}-{version}.tar.gz"
    cached = cdir / fname
    found = cached_sdist(fname, sha256, f"{name}=={version}")
    if found is not None:
        return found
    remedy = _download_remedy(name, version, sha256, cached)
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise RegenError(
            f"pip is not importable by {sys.executable}, and the regeneration downloads the "
            f"upstream sdist {name}=={version} with it. pip is a build requirement of this project "
            "(pyproject.toml [build-system] requires): build with build isolation (the default of "
            "pip, build and uv), or install pip into the environment you build in. " + remedy
        )
    with tempfile.TemporaryDirectory(prefix="mistralai-patched-dl-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--no-input",
            "-d",
            tmp,
            f"{name}=={version}",
        ]
        shown = " ".join(cmd)
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, env=pip_environment(), stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RegenError(
                f"Could not download the upstream sdist {name}=={version}: `{shown}` failed "
                f"to run or finish ({exc}).\n{remedy}"
            ) from exc
        files = sorted(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not files:
            # Where pip looked (stdout, "Looking in indexes: …") and its errors (stderr).
            where = [line for line in proc.stdout.splitlines() if line.startswith("Looking in ")]
            lines = where + proc.stderr.strip().splitlines()[-20:]
            said = "\n".join("    " + line for line in lines or ["(no output)"])
            raise RegenError(
                f"pip could not download the upstream sdist {name}=={version} from the package index.\n"
                f"  command: {shown}\n  exit status: {proc.returncode}\n  pip said:\n{said}\n{remedy}"
            )
        got = _sha256_file(files[0])
        if sha256 is not None and got != sha256:
            raise RegenError(
                f"The sdist downloaded for {name}=={version} has sha256 {got}, but gen.yaml pins "
                f"{sha256}. The index served different bytes than the ones reviewed: do not build "
                "from it. If the release was legitimately re-uploaded, review it and update "
                "`upstream.sdist_sha256` in gen.yaml. Nothing was written."
            )
        cdir.mkdir(parents=True, exist_ok=True)
        staging = cdir / (fname + f".{os.getpid()}.part")
        shutil.copyfile(files[0], staging)
        os.replace(staging, cached)
    return cached


def extract_sdist(sdist: Path, dest: Path) -> Path:
    """Extract ``sdist`` under ``dest`` and return its top directory."""
    with tarfile.open(sdist, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python < 3.10.12
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise RegenError(f"Unsafe path {member.name!r} in {sdist.name}; refusing to extract.")
            tar.extractall(dest)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise RegenError(f"{sdist.name} does not have a single top directory; it is not an sdist we know.")
    return tops[0]


def _load_toml(path: Path) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(path.read_text(encoding="utf-8"))


def wheel_sources(sdist_root: Path, import_package: str) -> List[Tuple[str, str]]:
    """Upstream's mapping of sdist directories to wheel paths, outermost first."""
    meta = _load_toml(sdist_root / "pyproject.toml")
    sources = meta.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {}).get("sources")
    if not isinstance(sources, dict) or not sources:
        raise RegenError(
            "The upstream pyproject.toml no longer declares [tool.hatch.build.targets.wheel.sources], "
            "which the regeneration uses to lay the sdist out as upstream's wheel does. Upstream "
            "changed its build: update wheel_sources() in scripts/regen/sdist.py after reviewing it."
        )
    pairs = sorted(sources.items(), key=lambda kv: kv[1].count("/"))
    if pairs[0][1] != import_package:
        raise RegenError(f"Upstream's wheel does not map a directory to {import_package!r}: {sources}.")
    return pairs


def upstream_metadata(sdist_root: Path) -> Dict[str, Any]:
    """Requires-Python, base dependencies and extras from the sdist's PKG-INFO."""
    msg = email.parser.Parser().parsestr((sdist_root / "PKG-INFO").read_text(encoding="utf-8"))
    extras: Dict[str, List[str]] = {e: [] for e in msg.get_all("Provides-Extra") or []}
    deps: List[str] = []
    for req in msg.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if not found:
            deps.append(req.strip())
            continue
        rest = marker[: found.start()] + marker[found.end() :]
        rest = re.sub(r"^\s*and\s+|\s+and\s*$", "", rest.strip()).strip()
        extras.setdefault(found.group(1), []).append(spec.strip() + (f"; {rest}" if rest else ""))
    return {
        "requires_python": msg.get("Requires-Python"),
        "dependencies": deps,
        "optional_dependencies": extras,
    }


# --------------------------------------------------------------------------- units
