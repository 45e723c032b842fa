"""`pack inspect`: what a pack is, without running it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .pack import Pack


def inspect_pack(directory: str | Path) -> dict[str, Any]:
    pack = Pack.open(directory, check="size")
    m = pack.manifest
    specs = pack.family.tensor_specs(pack.config)
    per_group: dict[str, dict[str, float]] = defaultdict(lambda: {"tensors": 0, "params": 0, "bytes": 0})
    for name, info in pack.weights.tensor_infos().items():
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
