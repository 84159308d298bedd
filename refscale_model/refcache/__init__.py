"""The route-keyed reference cache: SQLite R*Tree index of earlier drives' frames, and its importers."""
