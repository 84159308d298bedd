"""Offboard fleet reconstruction on Ray (optional extra `[fleet]`: ray, fsspec).

Nothing here imports Ray at import time; `runner.fleet_reconstruct` does, and says how to install it.
"""

from refscale_model.fleet.manifest import Manifest
from refscale_model.fleet.runner import INSTALL_HINT, FleetReport, RayMissingError, fleet_reconstruct

__all__ = ["INSTALL_HINT", "FleetReport", "Manifest", "RayMissingError", "fleet_reconstruct"]
