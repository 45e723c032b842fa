"""Writes a pruned int8 weight-only pi0.5 in the layout the torchao-int8wo importer documents
(torchao's safetensors flattening: `<key>:qdata` int8 + `<key>:scale` per output row) from a tiny
pack: layers dropped from both Gemma stacks and renumbered (Shallow-π), every nn.Linear weight
quantised per row symmetrically (torchao Int8WeightOnlyConfig), the rest kept as plain floats."""

from __future__ import annotations

import re

import numpy as np
import torch
from safetensors.torch import save_file

from checkpoint_layout import EXP, PALI, write_checkpoint

LINEAR = re.compile(r"(_proj|\.fc[12]|\.linear|\.dense|time_mlp_(in|out))\.weight$")
STACKS = (PALI + "layers.", EXP + "layers.")


def int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.maximum(np.abs(w).max(axis=1), 1e-8) / 127.0
    return np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8), scale.astype(np.float32)


def keep_layers(key: str, llm: list[int], expert: list[int]) -> str | None:
    """Drop layers not kept and renumber the rest (None: dropped)."""
    for stack, kept in zip(STACKS, (llm, expert)):
        if key.startswith(stack):
            i = int(key[len(stack):].split(".")[0])
            if i not in kept:
                return None
            return f"{stack}{kept.index(i)}{key[len(stack) + len(str(i)):]}"
    return key


def write_torchao(pack_dir, out, llm=(0,), expert=(0,), renumber=True, strip_scales=False, dequantised=False):
    """dequantised=True writes the same model with q * scale in fp32 (plain checkpoint) instead."""
    src = write_checkpoint(pack_dir, out)
    from safetensors.torch import load_file

    tensors = load_file(str(src / "model.safetensors"))
    flat = {}
    for key, t in tensors.items():
        new = keep_layers(key, list(llm), list(expert))
        if new is None:
            continue
        new = new if renumber else key
        if LINEAR.search(key) and t.ndim == 2:
            q, s = int8_rows(t.numpy())
            if dequantised:
                flat[new] = torch.from_numpy(q.astype(np.float32) * s[:, None])
                continue
            flat[new + ":qdata"] = torch.from_numpy(q)
            if not strip_scales:
                flat[new + ":scale"] = torch.from_numpy(s)
        else:
            flat[new] = t
    save_file(flat, str(src / "model.safetensors"))
    return src
