"""``python -m mistralai_patched check``: is the patched SDK the one Python imports?

Reports, without importing the SDK: for each file our templates rendered, the file Python would
import and whether its bytes are ours (sha256 against our wheel's RECORD, or against the build
record for an editable install); which installed distributions own files under ``mistralai/``
(upstream ``mistralai`` installed beside us overwrites the same files: last one wins); the
upstream base version; the httpx version.

Exit codes: 0 the patched files are active; 1 they are not (missing, modified or overwritten);
2 this copy of mistralai_patched has no build record (not built by the regeneration).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import importlib.util
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import build_info


def _sha256_hex(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _record_hex(file: Any) -> Optional[str]:
    """sha256 hex of a RECORD entry (``importlib.metadata.PackagePath``), if it has one."""
    if file.hash is None or file.hash.mode != "sha256":
        return None
    value = file.hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def _active_file(wheel_path: str) -> Optional[Path]:
    """The file Python would import for ``mistralai/<...>.py``, found without importing it."""
    parts = wheel_path.split("/")
    spec = importlib.util.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    rest = Path(*parts[1:])
    for location in spec.submodule_search_locations:
        # The first portion that has the target package wins, as in the import system.
        top = Path(location) / parts[1]
        if top.is_dir():
            candidate = Path(location) / rest
            return candidate if candidate.is_file() else None
    return None


def _owners(package: str) -> Dict[str, Dict[str, Any]]:
    """Installed distributions that own files under ``<package>/``, with their RECORD hashes."""
    owners: Dict[str, Dict[str, Any]] = {}
    for dist in md.distributions():
        files = [f for f in (dist.files or []) if f.parts and f.parts[0] == package and f.suffix != ".pyc"]
        if files:
            name = dist.metadata["Name"]
            owners[name] = {
                "version": dist.version,
                "files": len(files),
                "hashes": {"/".join(f.parts): _record_hex(f) for f in files},
            }
    return owners


def collect() -> Dict[str, Any]:
    """Gather the report as a dict (the ``--json`` output)."""
    info = build_info()
    dist_name = info.get("distribution", "mistralai-patched")
    owners = _owners("mistralai")
    ours = owners.get(dist_name, {}).get("hashes", {})
    files: List[Dict[str, Any]] = []
    for wheel_path, built_hex in sorted(info.get("rendered", {}).items()):
        active = _active_file(wheel_path)
        on_disk = _sha256_hex(active) if active else None
        expected = ours.get(wheel_path) or built_hex
        belongs_to = [name for name, o in owners.items() if on_disk and o["hashes"].get(wheel_path) == on_disk]
        state = "patched" if on_disk and on_disk == expected else ("missing" if on_disk is None else "not ours")
        files.append({"file": wheel_path, "active_path": str(active) if active else None, "state": state,
                      "bytes_of": belongs_to})
    try:
        httpx_version = md.version("httpx")
    except md.PackageNotFoundError:
        httpx_version = None
    others = sorted(n for n in owners if n != dist_name)
    return {
        "distribution": dist_name,
        "version": info.get("version"),
        "upstream_base": info.get("upstream", {}).get("version"),
        "httpx": httpx_version,
        "has_build_record": bool(info),
        "patch_active": bool(files) and all(f["state"] == "patched" for f in files),
        "files": files,
        "owners_of_mistralai": {n: {"version": o["version"], "files": o["files"]} for n, o in owners.items()},
        "other_owners": others,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mistralai-patched check", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = collect()
    code = 0 if report["patch_active"] else (2 if not report["has_build_record"] else 1)
    if args.json:
        print(json.dumps(dict(report, exit_code=code), indent=2))
        return code
    print("mistralai-patched check")
    print(f"  distribution     {report['distribution']} {report['version'] or '(no build record)'}")
    print(f"  upstream base    mistralai {report['upstream_base']}")
    print(f"  httpx            {report['httpx']}")
    owners = ", ".join(f"{n} {o['version']} ({o['files']} files)" for n, o in report["owners_of_mistralai"].items())
    print(f"  mistralai/ owned by  {owners or '(no installed distribution: editable or source tree)'}")
    for f in report["files"]:
        extra = f" (bytes of {', '.join(f['bytes_of'])})" if f["bytes_of"] and f["state"] != "patched" else ""
        print(f"  {f['state']:<9} {f['file']}{extra}")
    if report["other_owners"]:
        print(
            f"\nWARNING: {', '.join(report['other_owners'])} also install files under mistralai/. "
            "Two distributions writing the same files: the last installed wins, and uninstalling "
            "either removes files the other needs."
            + (" Upstream 'mistralai' is installed beside mistralai-patched: run "
               "`pip uninstall -y mistralai && pip install --force-reinstall --no-deps mistralai-patched`."
               if "mistralai" in report["other_owners"] else "")
        )
    if code == 0:
        print("\nOK: the patched SDK files are the ones Python imports.")
    elif code == 2:
        print("\nUNKNOWN: this mistralai_patched has no build record; build it with scripts/regenerate or pip.")
    else:
        print("\nNOT PATCHED: some SDK files Python imports are not mistralai-patched's (see above).")
    return code
