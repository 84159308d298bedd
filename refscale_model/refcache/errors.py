"""Errors of the reference cache (all derive from `CacheError`)."""

from __future__ import annotations


class CacheError(Exception):
    """Base of every reference-cache error."""


class ReferenceMissingError(CacheError):
    """The named reference (id, or its image file) is not in this cache."""


class CacheNotFoundError(ReferenceMissingError, FileNotFoundError):
    """No cache index at the given directory: a missing file to every caller that reports those."""


class ReferenceMismatchError(CacheError):
    """The reference exists but its content hash differs from what was asked for / recorded."""


class CacheIndexError(CacheError, ValueError):
    """The index cannot be used: not an SQLite file, damaged, unreadable here, or another schema version.

    A `ValueError` too: to the CLI and the ROS nodes it is bad input (exit 2), not a crash.
    """


class DegenerateReferenceError(CacheError, ValueError):
    """An image too small or too elongated to register against (see `files.check_reference_size`)."""
