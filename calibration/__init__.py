"""Calibration: recorded observations -> activation scale tables (planned; no code yet)."""
