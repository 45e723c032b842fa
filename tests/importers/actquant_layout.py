"""Writes an ActQuant pi0.5 pack in the released layout from a tiny pack (facts from
shared/reference/actquant-pi05-gguf.md): `pi05.gguf` with the exporter's metadata (no
pi05.llm.* keys, quant strings, actual_*_dim), a K-quant mix, F32 `norm.*` stat tensors,
`tokenizer.model`, and `norm_stats.json` with the flat keys ActQuant's server reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from vla_edge.families.pi05.metadata import ARCH, config_to_metadata
from vla_edge.packs.gguf_io import GGUFFile, PlannedTensor, write_gguf
from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import quantize_pack

STAT_FIELDS = ("mean", "std", "q01", "q99")


def released_metadata(pack: Pack) -> dict:
    meta = {k: v for k, v in config_to_metadata(pack.config).items()
            if not k.startswith("pi05.llm.") and k != "pi05.variant"}
    n = len(pack.manifest.action_space.names)
    meta.update({"pi05.quant_llm": "q3k", "pi05.quant_vision": "q4k", "pi05.quant_embedding": "q8",
                 "pi05_action.actual_action_dim": n, "pi05_action.actual_state_dim": n})
    return meta


def write_release(tiny_pack: Path, out: Path, work: Path, norm_json: str = "flat",
                  norm_tensors: bool = True, edit=None) -> Path:
    """edit(name, array) -> array lets a test damage one tensor (wrong shape, ...)."""
    quantized = quantize_pack(tiny_pack, "actquant-3.97", work / "q", golden=False)
    pack = Pack.open(quantized)
    weights = GGUFFile(pack.weights_path)
    stats = json.loads((quantized / "norm_stats.json").read_text())["norm_stats"]
    tensors = []
    for name, info in weights.tensor_infos().items():
        data, _ = weights.raw(name)
        data = np.asarray(data)
        shape = info.shape
        if edit is not None:
            new = edit(name, weights.float32(name))
            if new is None:
                continue
            if new.shape != shape:
                data, shape = new.astype(np.float32), new.shape
                tensors.append(PlannedTensor(name, shape, "F32", lambda d=data: d))
                continue
        tensors.append(PlannedTensor(name, shape, info.ggml_type, lambda d=data: d))
    if norm_tensors:
        for key, prefix in (("state", "state"), ("actions", "action")):
            for f in STAT_FIELDS:
                values = np.asarray(stats[key][f], np.float32)
                tensors.append(PlannedTensor(f"norm.{prefix}_{f}", values.shape, "F32", lambda v=values: v))
    out.mkdir(parents=True)
    write_gguf(out / "pi05.gguf", ARCH, released_metadata(pack), tensors)
    shutil.copyfile(quantized / "tokenizer.model", out / "tokenizer.model")
    if norm_json == "flat":
        flat = {f"{p}_{f}": stats[k][f] for k, p in (("state", "state"), ("actions", "action")) for f in STAT_FIELDS}
        (out / "norm_stats.json").write_text(json.dumps(flat))
    elif norm_json == "openpi":
        (out / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}))
    return out
