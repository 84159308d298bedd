"""The route-keyed reference cache: SQLite R*Tree index of earlier drives' frames, and its importers.

`store` (ReferenceCache, Reference, reports), `errors`, `schema` (index format), `files` (PNG
files, atomic writes), `importers` (CSV folders and raw bags). Geodesy lives in `refscale_model.geo`.
"""

from refscale_model.geo import haversine_m, navsatfix_position, pseudo_latlon
from refscale_model.refcache.errors import (
    CacheError,
    CacheIndexError,
    CacheNotFoundError,
    DegenerateReferenceError,
    ReferenceMismatchError,
    ReferenceMissingError,
)
from refscale_model.refcache.importers import ImportReport, add_images, build_from_bag
from refscale_model.refcache.store import CacheInfo, Reference, ReferenceCache, VerifyReport

__all__ = [
    "CacheError",
    "CacheIndexError",
    "CacheInfo",
    "CacheNotFoundError",
    "DegenerateReferenceError",
    "ImportReport",
    "Reference",
    "ReferenceCache",
    "ReferenceMismatchError",
    "ReferenceMissingError",
    "VerifyReport",
    "add_images",
    "build_from_bag",
    "haversine_m",
    "navsatfix_position",
    "pseudo_latlon",
]
