"""Scenes -> chips on one common grid, the GeoParquet chip index and packed stores."""
