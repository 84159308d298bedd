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
