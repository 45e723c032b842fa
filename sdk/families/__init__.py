"""Model families by name. Known-but-unsupported families fail with a clear message."""

from __future__ import annotations

import importlib

from ..errors import PackError
from .base import Family

FAMILIES: dict[str, str] = {"pi05": "vla_edge.families.pi05.family:FAMILY"}
PLANNED = {"openvla-oft": "OpenVLA-OFT", "gr00t-n1.5": "GR00T N1.5"}


def get_family(name: str) -> Family:
    if name in FAMILIES:
        module, _, attr = FAMILIES[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    if name in PLANNED:
        raise PackError("family", f"'{name}' ({PLANNED[name]}) is recognised but not supported yet; "
                                  f"supported: {sorted(FAMILIES)}")
    raise PackError("family", f"unknown model family '{name}'; supported: {sorted(FAMILIES)}")
