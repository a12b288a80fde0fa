"""``scripts/regenerate``: the command line of the regeneration."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, TypeVar

from .build import Interrupted, is_fresh, regenerate
from .errors import RegenError
from .paths import DEFAULT_OUT, UPSTREAM_ENV
from .survey import DEFAULT_FROM, Surveyed, describe, survey

T = TypeVar("T")


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``scripts/regenerate``; returns the exit status (0, 1 stale, 2 error, 128+signal)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="scripts/regenerate",
        description="Regenerate src/mistralai/ from the pinned upstream sdist and our templates.",
    )
    parser.add_argument(
        "--upstream",
        metavar="LINE",
        help=f"the release line to build: its name (3.x, 2.x) or the upstream version it pins "
        f"(default: ${UPSTREAM_ENV}, else gen.yaml's default_line)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory of the mistralai package to write (default: src/mistralai)",
    )
    parser.add_argument(
        "--pristine", action="store_true", help="write upstream's tree without our templates (to prove tests bite)"
    )
    parser.add_argument(
        "--accept-upstream",
        action="store_true",
        help="record new upstream fingerprints in .speakeasy/gen.lock after review",
    )
    parser.add_argument(
        "--check", action="store_true", help="only report whether src/mistralai is up to date (exit 1 if stale)"
    )
    survey = parser.add_argument_group("survey of upstream releases")
    survey.add_argument(
        "--survey",
        action="store_true",
        help="try every final upstream release on the index (from --from on) against its line's "
        "templates and lock; report which build and every difference of the others; writes nothing",
    )
    survey.add_argument(
        "--from",
        dest="start",
        default=DEFAULT_FROM,
        metavar="VERSION",
        help=f"the oldest release to survey (default {DEFAULT_FROM})",
    )
    survey.add_argument("--json", action="store_true", help="print the survey as a JSON list")
    survey.add_argument("--diffs", action="store_true", help="with each difference, its diff and what to do")
    parser.add_argument(
        "--index-url",
        metavar="URL",
        help="simple API of the index to list releases on (default: $PIP_INDEX_URL, else PyPI)",
    )
    parser.add_argument(
        "--update-pin",
        action="store_true",
        help="with --upstream VERSION (a release not pinned yet): move the line VERSION belongs to onto "
        "it, when every unit we replace or rely on is unchanged; writes gen.yaml and the lock",
    )
    args = parser.parse_args(argv)
    if args.survey:
        return _survey(args)
    if args.update_pin:
        return _update_pin(args)
    if args.check:
        try:
            fresh = is_fresh(args.upstream)
        except RegenError as exc:
            print(f"regenerate: error: {exc}", file=sys.stderr)
            return 2
        print("src/mistralai is up to date" if fresh else "src/mistralai is missing or stale")
        return 0 if fresh else 1
    result, status = _attempt(
        lambda: regenerate(args.out, pristine=args.pristine, accept=args.accept_upstream, upstream=args.upstream),
        f"the temporary files were removed and {args.out} was left as it was "
        "(or, when the signal came during the final swap, replaced whole)",
    )
    if result is None:
        return status
    kind = "pristine upstream" if args.pristine else "patched"
    line = result.line
    print(
        f"wrote {kind} {line.upstream_name} {line.upstream_version} tree (line {line.name}, "
        f"{line.http_library}) to {result.out}"
    )
    for path in sorted(result.rendered_hashes):
        print(f"  rendered {path}")
    return 0


def _attempt(call: Callable[[], T], after_signal: str) -> Tuple[Optional[T], int]:
    """``(what call returns, 0)``, or ``(None, exit status)`` with the message printed: 2 for a
    RegenError, 128 + the signal for an interruption (``after_signal`` says what was left)."""
    try:
        return call(), 0
    except RegenError as exc:
        print(f"regenerate: error: {exc}", file=sys.stderr)
        return None, 2
    except Interrupted as exc:
        print(f"regenerate: {exc}; {after_signal}", file=sys.stderr)
        return None, 128 + exc.signum


def _survey(args: Any) -> int:
    """``--survey``: 0 when every release was surveyed (building or not), 1 when some could not
    be fetched, 2 on an error before any result (the index cannot be listed)."""
    started = time.monotonic()

    def shown(result: Surveyed) -> None:
        if not args.json:
            print(describe(result, args.diffs), flush=True)

    results, status = _attempt(
        lambda: survey(args.start, index=args.index_url, progress=shown), "the survey's temporary files were removed"
    )
    if results is None:
        return status
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        building = [r.version for r in results if r.builds]
        print(
            f"\n{len(results)} releases from {results[0].version} to {results[-1].version} in "
            f"{time.monotonic() - started:.0f} s; {len(building)} build: {', '.join(building) or 'none'}"
        )
    unsurveyed = any(d.kind == "not surveyed" for r in results for d in r.differences)
    return 1 if unsurveyed else 0


def _update_pin(args: Any) -> int:
    from .pin import update_pin

    if not args.upstream:
        print(
            "regenerate: error: --update-pin needs --upstream VERSION (the upstream release to move "
            "its line onto). Nothing was written.",
            file=sys.stderr,
        )
        return 2
    said, status = _attempt(
        lambda: update_pin(args.upstream, index=args.index_url),
        "gen.yaml, the lock and src/mistralai were left as they were",
    )
    if said is None:
        return status
    print(said)
    return 0
