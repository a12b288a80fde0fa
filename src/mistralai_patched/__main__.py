"""Command line: ``python -m mistralai_patched {selftest,check,drop-in}``."""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Dispatch to ``selftest``, ``check`` or ``drop-in``; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: mistralai-patched {selftest,check,drop-in} [options]\n"
        "  selftest  reproduce the connection-leak bug on a loopback server; exit 1 on any leak\n"
        "  check     is the patched SDK the one that is imported? exit 1 when it is not\n"
        "  drop-in   write this install's drop-in wheel (distribution 'mistralai'): --out DIR\n"
        "Run 'mistralai-patched COMMAND --help' for a command's options."
    )
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "selftest":
        from .selftest import main as run
    elif command == "check":
        from .check import main as run
    elif command == "drop-in":
        from .dropin import main as run
    else:
        print(f"mistralai-patched: unknown command {command!r}\n{usage}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
