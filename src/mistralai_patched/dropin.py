"""``mistralai-patched drop-in --out DIR``: an installed mistralai-patched writes its own drop-in
wheel, offline, from its installed files and build record.

The drop-in variant is the same tree as a distribution named like upstream's (``mistralai``),
versioned ``<upstream>+patched.<revision>``: it is what other packages' ``mistralai`` requirements
need (README, recipe A). ``scripts/build-drop-in`` builds it from a clone; this builds it from an
install, so any user can make one. Stdlib only: it runs in a venv where the package was installed
with ``--no-deps``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import build_info
from .check import _record_hex

BUILD_INFO = "mistralai_patched/_build_info.json"
# Files of an installed .dist-info that the installer wrote, or that the wheel gets anew.
INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL", "METADATA"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # every entry: the wheel's bytes depend on its contents only


class DropInError(Exception):
    """The drop-in wheel cannot be made; ``str()`` says why and what to do."""


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def installed_files(dist: md.Distribution) -> Tuple[Dict[str, bytes], Dict[str, bytes]]:
    """``(package files, dist-info files)`` of an installed distribution, by path in the wheel.

    Package files are every file RECORD lists outside the ``.dist-info`` directory, without
    byte-code and console scripts; each is checked against RECORD's sha256. Dist-info files are
    those the wheel carried (``entry_points.txt``, ``licenses/…``), by name inside it.

    Raises:
        DropInError: RECORD is missing, lists no package file (an editable install), or a file
            is missing or differs from what was installed (another distribution overwrote it).
    """
    files = dist.files
    if not files:
        raise DropInError(f"{dist.metadata['Name']} has no RECORD of its installed files; reinstall it with pip or uv.")
    package: Dict[str, bytes] = {}
    meta: Dict[str, bytes] = {}
    changed: List[str] = []
    for entry in files:
        path = entry.as_posix()
        parts = entry.parts
        if parts[0] == ".." or "__pycache__" in parts or path.endswith((".pyc", ".pyo")):
            continue
        try:
            data = Path(str(dist.locate_file(entry))).read_bytes()
        except OSError:
            changed.append(f"{path} (missing)")
            continue
        if parts[0].endswith(".dist-info"):
            name = "/".join(parts[1:])
            if name not in INSTALLER_FILES:
                meta[name] = data
            continue
        if _record_hex(entry) != hashlib.sha256(data).hexdigest():
            changed.append(path)
            continue
        package[path] = data
    if changed:
        raise DropInError(
            f"{len(changed)} installed file(s) of {dist.metadata['Name']} are not the ones it installed "
            f"(first: {', '.join(changed[:5])}): another distribution overwrote them, or they were "
            "edited. Reinstall it (`pip install --force-reinstall --no-deps "
            f"'{dist.metadata['Name']}=={dist.version}'`) and try again. Nothing was written."
        )
    if BUILD_INFO not in package:
        raise DropInError(
            f"{dist.metadata['Name']} is installed in editable mode (its RECORD lists no package files), "
            "so there are no installed files to make a wheel of. In a clone, run "
            "`scripts/build-drop-in`; or install mistralai-patched from a wheel or an index."
        )
    return package, meta


def drop_in_metadata(metadata: bytes, name: str, version: str) -> bytes:
    """The core metadata (METADATA) with ``Name`` and ``Version`` set; every other byte kept.

    Raises:
        DropInError: the header has not exactly one ``Name:`` and one ``Version:`` field.
    """
    text = metadata.decode("utf-8")
    head, sep, body = text.partition("\n\n")
    for field, value in (("Name", name), ("Version", version)):
        head, count = re.subn(rf"^{field}: .*$", f"{field}: {value}", head, flags=re.MULTILINE)
        if count != 1:
            raise DropInError(
                f"The installed METADATA has {count} `{field}:` fields, not one; reinstall mistralai-patched."
            )
    return (head + sep + body).encode("utf-8")


def build_drop_in(out: Path) -> Path:
    """Write the drop-in wheel of the installed mistralai-patched into ``out``; returns its path.

    The wheel (``mistralai-<upstream>+patched.<revision>-py3-none-any.whl``) holds the installed
    package files byte for byte, except the build record (``mistralai_patched/_build_info.json``),
    which names the drop-in distribution, variant and version as ``scripts/build-drop-in``'s does;
    METADATA is the installed one with Name and Version changed. Entries are sorted and dated
    1980-01-01, so the same install always gives the same bytes. Works offline.

    Raises:
        DropInError: there is no build record, the distribution it names is not installed, or
            :func:`installed_files` refuses; ``out`` is left as it was.
    """
    info = build_info()
    drop_in = info.get("drop_in") or {}
    if not info.get("distribution") or not drop_in.get("name") or not drop_in.get("version"):
        raise DropInError(
            "This mistralai_patched has no build record (a bare checkout?). Install mistralai-patched "
            "and run its `mistralai-patched drop-in`, or in a clone run `scripts/build-drop-in`."
        )
    try:
        dist = md.distribution(info["distribution"])
    except md.PackageNotFoundError:
        raise DropInError(f"The build record names {info['distribution']!r}, which is not installed here.") from None
    package, meta = installed_files(dist)
    name, version = drop_in["name"], drop_in["version"]
    record = dict(info, distribution=name, variant="drop-in", version=version)
    package[BUILD_INFO] = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"  # the wheel's name and its .dist-info
    dist_info = f"{stem}.dist-info"
    meta["METADATA"] = drop_in_metadata((dist.read_text("METADATA") or "").encode("utf-8"), name, version)
    meta["WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: mistralai-patched drop-in ({info.get('version')})\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n"
    ).encode()
    entries = sorted(package.items()) + sorted((f"{dist_info}/{k}", v) for k, v in meta.items())
    wheel_name = f"{stem}-py3-none-any.whl"
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{wheel_name}.", dir=out)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
            rows = io.StringIO()
            writer = csv.writer(rows, lineterminator="\n")
            for path, data in entries:
                _add(wheel, path, data)
                writer.writerow([path, _record_hash(data), len(data)])
            writer.writerow([f"{dist_info}/RECORD", "", ""])
            _add(wheel, f"{dist_info}/RECORD", rows.getvalue().encode())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a file written with open(); mkstemp's is 0o600
        os.replace(tmp, out / wheel_name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out / wheel_name


def _add(wheel: zipfile.ZipFile, path: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(path, date_time=ZIP_DATE)
    entry.external_attr = 0o644 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    wheel.writestr(entry, data)


def main(argv: Optional[List[str]] = None) -> int:
    """``mistralai-patched drop-in --out DIR``: exit 0 with the wheel's path, 2 when it cannot be made."""
    parser = argparse.ArgumentParser(prog="mistralai-patched drop-in", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the drop-in wheel into")
    args = parser.parse_args(argv)
    try:
        wheel = build_drop_in(args.out)
    except (DropInError, OSError) as exc:
        print(f"mistralai-patched drop-in: error: {exc}", file=sys.stderr)
        return 2
    print(wheel)
    return 0
