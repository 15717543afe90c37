"""Sweeps (`kdmarl sweep`): grids of train/distill runs on Ray Tune, their paired statistics and the report.

May import every other sub-package; nothing imports it but the CLI.
"""
