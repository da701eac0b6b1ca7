"""Lowest layer: helpers every other layer may use (JSON files, progress bars, devices,
downloads, tables). Nothing here imports any other lossnet package but ``lossnet.errors``."""
