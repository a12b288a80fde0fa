"""``scripts/regenerate``: the command line of the regeneration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from .build import Interrupted, is_fresh, regenerate
from .errors import RegenError
from .paths import DEFAULT_OUT, UPSTREAM_ENV


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
    args = parser.parse_args(argv)
    if args.check:
        try:
            fresh = is_fresh(args.upstream)
        except RegenError as exc:
            print(f"regenerate: error: {exc}", file=sys.stderr)
            return 2
        print("src/mistralai is up to date" if fresh else "src/mistralai is missing or stale")
        return 0 if fresh else 1
    try:
        result = regenerate(args.out, pristine=args.pristine, accept=args.accept_upstream, upstream=args.upstream)
    except RegenError as exc:
        print(f"regenerate: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(
            f"regenerate: {exc}; the temporary files were removed and {args.out} was left as it was "
            "(or, when the signal came during the final swap, replaced whole)",
            file=sys.stderr,
        )
        return 128 + exc.signum
    kind = "pristine upstream" if args.pristine else "patched"
    line = result.line
    print(
        f"wrote {kind} {line.upstream_name} {line.upstream_version} tree (line {line.name}, "
        f"{line.http_library}) to {result.out}"
    )
    for path in sorted(result.rendered_hashes):
        print(f"  rendered {path}")
    return 0
