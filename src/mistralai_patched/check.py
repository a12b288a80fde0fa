"""``mistralai-patched check``: is the patched SDK the one Python imports, and will it stay so?

Reports, without importing the SDK:

- this copy of the fork: distribution (``mistralai-patched``, or ``mistralai`` for the drop-in
  variant), version, release line, upstream base, its HTTP library (httpx or httpx2) and version;
- every installed distribution with files under ``mistralai/``: ours, upstream's ``mistralai``,
  or a namespace neighbour (``mistralai-agents``, ``mistralai-evaluations``: their own subpackages,
  no file in common with ours), and how many files each shares with ours;
- for each file our templates render, the file Python would import and whose bytes it holds
  (sha256 against each owner's RECORD; for an editable install, against the build record);
- for files two distributions both install, whose bytes are on disk (``--json`` lists each);
- when something is wrong, the README recipe that fixes it and the commands.

Exit codes:
    0  the patched files are active and no other distribution installs the same files;
    1  NOT PATCHED: some rendered file Python imports is missing or holds other bytes (upstream
       ``mistralai`` installed over ours, or a file edited);
    2  UNKNOWN: this copy of mistralai_patched has no build record (not built by the regeneration);
    3  FRAGILE: the patched files are active, but another distribution installs the same files
       (upstream ``mistralai``, or both variants of the fork): reinstalling it overwrites ours, and
       uninstalling either deletes files the other needs.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata as md
import importlib.util
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import build_info
from .integrity import active_file, sha256_file

EXIT_OK, EXIT_NOT_PATCHED, EXIT_UNKNOWN, EXIT_FRAGILE = 0, 1, 2, 3
RECIPES = {
    "A": "README, 'Recipe A: pip with the drop-in wheel'",
    "B": "README, 'Recipe B: uv with an override'",
}
OUR_MARKER = "mistralai_patched/_build_info.json"


def _record_hex(file: Any) -> Optional[str]:
    """sha256 hex of a RECORD entry (``importlib.metadata.PackagePath``), if it has one."""
    if file.hash is None or file.hash.mode != "sha256":
        return None
    value = file.hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def _package_path(package: str) -> List[str]:
    spec = importlib.util.find_spec(package)
    return list(spec.submodule_search_locations or []) if spec else []


def _owners(package: str) -> List[Dict[str, Any]]:
    """Installed distributions with files under ``<package>/``: name, version, kind, RECORD hashes
    by wheel path, and each file's location on disk."""
    owners: List[Dict[str, Any]] = []
    seen = set()
    for dist in md.distributions():
        all_files = dist.files or []
        files = [f for f in all_files if f.parts and f.parts[0] == package and f.suffix != ".pyc"]
        if not files:
            continue
        name, version = dist.metadata["Name"], dist.version
        key = (name, version, str(dist.locate_file("")))
        if key in seen:  # the same sys.path entry listed twice
            continue
        seen.add(key)
        ours = any("/".join(f.parts) == OUR_MARKER for f in all_files)
        owners.append(
            {
                "name": name,
                "version": version,
                "ours": ours,
                "label": f"{name} {version}",
                "hashes": {"/".join(f.parts): _record_hex(f) for f in files},
                "paths": {"/".join(f.parts): str(dist.locate_file(f)) for f in files},
            }
        )
    return owners


def _kind(owner: Dict[str, Any], shared: int) -> str:
    if owner["ours"]:
        return "mistralai-patched" if owner["name"] == "mistralai-patched" else "mistralai-patched (drop-in variant)"
    if shared:
        return "upstream SDK" if owner["name"].lower() == "mistralai" else "installs the same files as ours"
    return "namespace neighbour"


def _installed_version(distribution: str) -> Optional[str]:
    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return None


def collect() -> Dict[str, Any]:
    """Gather the report as a dict (the ``--json`` output, without ``exit_code``)."""
    info = build_info()
    dist_name = info.get("distribution", "mistralai-patched")
    owners = _owners("mistralai")
    ours = [o for o in owners if o["ours"]]
    our_paths = {p for o in ours for p in o["paths"].values()}
    # Files on disk that more than one distribution installs: whose bytes are there now?
    by_location: Dict[str, List[Dict[str, Any]]] = {}
    for owner in owners:
        for _wheel_path, location in owner["paths"].items():
            by_location.setdefault(location, []).append(owner)
    shared_files = []
    for location, claimants in sorted(by_location.items()):
        if len(claimants) < 2:
            continue
        wheel_path = next(p for p, loc in claimants[0]["paths"].items() if loc == location)
        on_disk = sha256_file(Path(location))
        shared_files.append(
            {
                "file": wheel_path,
                "path": location,
                "installed_by": [c["label"] for c in claimants],
                "bytes_of": [c["label"] for c in claimants if on_disk and c["hashes"].get(wheel_path) == on_disk],
            }
        )
    package_path = _package_path("mistralai")
    recorded = {}
    for owner in ours:
        recorded.update({p: h for p, h in owner["hashes"].items() if h})
    files: List[Dict[str, Any]] = []
    for wheel_path, built_hex in sorted(info.get("rendered", {}).items()):
        active = active_file(wheel_path, package_path)
        on_disk = sha256_file(active) if active else None
        expected = recorded.get(wheel_path) or built_hex
        state = "patched" if on_disk and on_disk == expected else ("missing" if on_disk is None else "not ours")
        files.append(
            {
                "file": wheel_path,
                "active_path": str(active) if active else None,
                "state": state,
                "bytes_of": [o["label"] for o in owners if on_disk and o["hashes"].get(wheel_path) == on_disk]
                or (["this build"] if state == "patched" else []),
            }
        )
    distributions = []
    for owner in owners:
        # Files it installs that (another copy of) the fork installs too, at the same location.
        others = {p for o in ours if o is not owner for p in o["paths"].values()}
        shared = sum(1 for p in owner["paths"].values() if p in (others if owner["ours"] else our_paths))
        distributions.append(
            {
                "name": owner["name"],
                "version": owner["version"],
                "ours": owner["ours"],
                "kind": _kind(owner, shared),
                "files": len(owner["paths"]),
                "shared_with_ours": shared,
            }
        )
    library = info.get("http_library") or "httpx"
    patch_active = bool(files) and all(f["state"] == "patched" for f in files)
    conflicting = [d for d in distributions if d["shared_with_ours"]]
    return {
        "distribution": dist_name,
        "variant": info.get("variant"),
        "version": info.get("version"),
        "line": info.get("line"),
        "upstream_base": info.get("upstream", {}).get("version"),
        "http_library": {"name": library, "version": _installed_version(library)},
        "httpx": _installed_version("httpx"),
        "has_build_record": bool(info),
        "patch_active": patch_active,
        "files": files,
        "distributions": distributions,
        "conflicting": [f"{d['name']} {d['version']}" for d in conflicting],
        "shared_files": shared_files,
        "remedy": _remedy(info, distributions, patch_active),
    }


def _remedy(info: Dict[str, Any], distributions: List[Dict[str, Any]], patch_active: bool) -> Optional[Dict[str, Any]]:
    """The recipe and commands that fix what the report found, or None when nothing is wrong."""
    upstream = [d for d in distributions if not d["ours"] and d["shared_with_ours"]]
    ours = [d for d in distributions if d["ours"]]
    drop_in = "{name}=={version}".format(**info.get("drop_in", {"name": "mistralai", "version": "<version>"}))
    if upstream:
        return {
            "problem": f"{', '.join(d['name'] + ' ' + d['version'] for d in upstream)} and "
            f"{', '.join(d['name'] + ' ' + d['version'] for d in ours)} install the same files under mistralai/; "
            "the last one installed wins, and a package that depends on 'mistralai' brings upstream back.",
            "recipes": [RECIPES["A"], RECIPES["B"]],
            "commands": [
                "pip uninstall -y mistralai mistralai-patched",
                f"pip install --find-links <directory with the drop-in wheel> '{drop_in}'",
            ],
        }
    if len(ours) > 1:
        keep = next((d for d in ours if d["name"].lower() == "mistralai"), ours[0])
        return {
            "problem": "both variants of the fork are installed; they install the same files, so "
            "uninstalling one deletes files of the other.",
            "recipes": [RECIPES["A"]],
            "commands": [
                "pip uninstall -y mistralai mistralai-patched",
                f"pip install --find-links <directory with the drop-in wheel> '{keep['name']}=={keep['version']}'",
            ],
        }
    if not patch_active and info:
        return {
            "problem": "files of the patched SDK are missing or were edited.",
            "recipes": [],
            "commands": [
                f"pip install --force-reinstall --no-deps '{info.get('distribution')}=={info.get('version')}'"
            ],
        }
    return None


def exit_code(report: Dict[str, Any]) -> int:
    """The exit code for a report (see the module docstring)."""
    if not report["has_build_record"]:
        return EXIT_UNKNOWN
    if not report["patch_active"]:
        return EXIT_NOT_PATCHED
    return EXIT_FRAGILE if report["conflicting"] else EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Print the report (text or ``--json``); returns the exit code (0, 1, 2 or 3, see above)."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="mistralai-patched check",
        description=doc.splitlines()[0],
        epilog="exit codes:\n" + doc.split("Exit codes:\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (with exit_code)")
    args = parser.parse_args(argv)
    report = collect()
    code = exit_code(report)
    if args.json:
        print(json.dumps(dict(report, exit_code=code), indent=2))
        return code
    _print_text(report, code)
    return code


def _print_text(report: Dict[str, Any], code: int) -> None:
    print("mistralai-patched check")
    print(
        f"  this copy        {report['distribution']} {report['version'] or '(no build record)'}"
        + (f" ({report['variant']} variant)" if report["variant"] else "")
    )
    print(f"  release line     {report['line']}")
    print(f"  upstream base    mistralai {report['upstream_base']}")
    library = report["http_library"]
    print(f"  HTTP library     {library['name']} {library['version'] or '(not installed)'}")
    print("  distributions with files under mistralai/:")
    if not report["distributions"]:
        print("    (none installed: an editable install or a source tree)")
    for d in report["distributions"]:
        shared = (
            f", {d['shared_with_ours']} of them also installed by ours"
            if d["shared_with_ours"] and not d["ours"]
            else ""
        )
        print(f"    {d['name'] + ' ' + d['version']:<38} {d['kind']}: {d['files']} files{shared}")
    print(f"  the {len(report['files'])} SDK files the fork renders (state, file, whose bytes are on disk):")
    for f in report["files"]:
        print(f"    {f['state']:<9} {f['file']}  [{', '.join(f['bytes_of']) or 'unknown bytes'}]")
    if report["shared_files"]:
        tally: Dict[str, int] = {}
        for f in report["shared_files"]:
            key = " = ".join(f["bytes_of"]) or "neither (edited)"
            tally[key] = tally.get(key, 0) + 1
        print(f"  {len(report['shared_files'])} files are installed by more than one distribution; bytes on disk:")
        for key, count in sorted(tally.items(), key=lambda kv: -kv[1]):
            print(f"    {count:>5}  {key}")
    if code == EXIT_OK:
        print("\nOK: the patched SDK files are the ones Python imports, and no other distribution installs them.")
    elif code == EXIT_UNKNOWN:
        print("\nUNKNOWN: this mistralai_patched has no build record; build it with scripts/regenerate or pip.")
    elif code == EXIT_FRAGILE:
        print("\nFRAGILE: the patched files are active now, but another distribution installs the same files.")
    else:
        print(
            "\nNOT PATCHED: some SDK files Python imports are not mistralai-patched's (see above): "
            "the connection-leak fix is not active."
        )
    remedy = report["remedy"]
    if remedy:
        print(f"  why: {remedy['problem']}")
        if remedy["recipes"]:
            print(f"  fix: {' or '.join(remedy['recipes'])}; with pip:")
        else:
            print("  fix:")
        for command in remedy["commands"]:
            print(f"    {command}")
