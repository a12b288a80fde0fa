"""The one error type of the regeneration."""

from __future__ import annotations


class RegenError(Exception):
    """A regeneration failure; ``str()`` is a paragraph saying what is wrong and what to do."""
