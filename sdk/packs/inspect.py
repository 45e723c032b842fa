"""`pack inspect`: what a pack is, without running it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .pack import Pack
from .w4a4 import is_w4a4_tensor, logical_weight


def inspect_pack(directory: str | Path) -> dict[str, Any]:
    pack = Pack.open(directory, check="size")
    m = pack.manifest
    specs = pack.family.tensor_specs(pack.config)
    per_group: dict[str, dict[str, float]] = defaultdict(lambda: {"tensors": 0, "params": 0, "bytes": 0})
    for name, info in pack.weights.tensor_infos().items():
        if is_w4a4_tensor(name):  # a W4A4 layer: its codes stand for the weight, the rest is its cost
            spec = specs[logical_weight(name)]
            g = per_group[spec.group]
            is_codes = name.endswith(".w4a4.codes")
            g["tensors"] += int(is_codes)
            g["params"] += int(np.prod(spec.shape)) if is_codes else 0
            g["bytes"] += info.n_bytes
            continue
        g = per_group[specs[name].group if name in specs else "other"]
        g["tensors"] += 1
        g["params"] += info.n_elements
        g["bytes"] += info.n_bytes
    for g in per_group.values():
        g["bits_per_weight"] = round(8 * g["bytes"] / max(g["params"], 1), 3)
    return {
        "name": m.name,
        "family": m.family,
        "variant": getattr(pack.config, "variant", None),
        "format_version": m.format_version,
        "targets": m.targets,
        "quantization": m.quantization.model_dump(),
        "groups": dict(per_group),
        "files": {role: e.model_dump() for role, e in pack.file_entries().items()},
        "state_space": m.state_space.model_dump(),
        "action_space": m.action_space.model_dump(),
        "cameras": m.cameras,
        "required_cameras": m.required_cameras,
        "golden": m.golden.model_dump() if m.golden else None,
        "source": m.source,
        "config": m.config,
    }
