"""Writes a pruned int8 weight-only pi0.5 the way torchao itself writes one, from a tiny pack:
layers dropped from both Gemma stacks and renumbered (Shallow-π), every nn.Linear weight
quantised by torchao's `quantize_(…, Int8WeightOnlyConfig(granularity=…))` and the state dict
saved with torchao's `flatten_tensor_state_dict` + safetensors (tensors + header metadata), so the
file layout is torchao's, not our reading of it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import torch
from safetensors.torch import load_file, save_file

from checkpoint_layout import EXP, PALI, write_checkpoint

LINEAR = re.compile(r"(_proj|\.fc[12]|\.linear|\.dense|time_mlp_(in|out))\.weight$")
STACKS = (PALI + "layers.", EXP + "layers.")


def keep_layers(key: str, llm: list[int], expert: list[int]) -> str | None:
    """Drop layers not kept and renumber the rest (None: dropped)."""
    for stack, kept in zip(STACKS, (llm, expert)):
        if key.startswith(stack):
            i = int(key[len(stack):].split(".")[0])
            if i not in kept:
                return None
            return f"{stack}{kept.index(i)}{key[len(stack) + len(str(i)):]}"
    return key


def granularity(kind: str):
    from torchao.quantization import PerGroup, PerRow, PerTensor

    return {"row": PerRow(), "tensor": PerTensor(), "group32": PerGroup(32), "group16": PerGroup(16)}[kind]


def torchao_int8(weight: torch.Tensor, kind: str, dynamic_act: bool = False) -> torch.Tensor:
    """The Int8Tensor torchao's quantize_ puts into an nn.Linear holding `weight`."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
    group = int(kind[5:]) if kind.startswith("group") else 1
    kind = kind if weight.shape[1] % group == 0 else "row"  # torchao needs whole groups (SigLIP fc2 is 200 wide)
    quantize_(linear, Int8DynamicActivationInt8WeightConfig() if dynamic_act
              else Int8WeightOnlyConfig(granularity=granularity(kind)))
    return linear.state_dict()["weight"]


def write_torchao(pack_dir, out, llm=(0,), expert=(0,), renumber=True, kind="row",
                  edit: Callable[[dict, dict], None] | None = None, dequantised=False, dynamic_act=False,
                  config: dict | None = None):
    """kind: row | tensor | group32 | group16 (group16 splits Q8_0 blocks). dequantised=True writes the
    same model with torchao's own `dequantize()` in fp32 as a plain checkpoint instead. `edit`
    may change (tensors, metadata) before saving, to damage the file. config.json states the kept
    depths (as a pruning export should) unless `config` overrides them."""
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    depths = {"paligemma_depth": len(llm), "action_expert_depth": len(expert)}
    src = write_checkpoint(pack_dir, out, config={**depths, **(config or {})})
    state = {}
    for key, t in load_file(str(src / "model.safetensors")).items():
        new = keep_layers(key, list(llm), list(expert))
        if new is None:
            continue
        new = new if renumber else key
        if LINEAR.search(key) and t.ndim == 2:
            q = torchao_int8(t, kind, dynamic_act)
            state[new] = q.dequantize(torch.float32) if dequantised else q
        else:
            state[new] = t
    if dequantised:
        save_file(state, str(src / "model.safetensors"))
        return src
    tensors, metadata = flatten_tensor_state_dict(state)
    if edit is not None:
        edit(tensors, metadata)
    save_file(tensors, str(src / "model.safetensors"), metadata=metadata)
    return src


def strip_scales(tensors: dict, metadata: dict) -> None:
    """What saving only the int8 data leaves: scale tensors gone."""
    for key in [k for k in tensors if k.endswith("_weight_scale")]:
        del tensors[key]


def drop_metadata(tensors: dict, metadata: dict) -> None:
    """What `save_file({k: w.qdata ...})` of the bare int8 data under the weight keys leaves."""
    for key in [k for k in tensors if k.endswith("._weight_qdata")]:
        stem = key[: -len("._weight_qdata")]
        tensors[stem + ".weight"] = tensors.pop(key)
        tensors.pop(stem + "._weight_scale", None)
        tensors.pop(stem + "._weight_zero_point", None)
    metadata.clear()


def retype_one(tensors: dict, metadata: dict, to: str = "Float8Tensor") -> str:
    """Claim one weight is another torchao subclass; returns its key."""
    name = next(n for n in json.loads(metadata["tensor_names"]) if json.loads(metadata[n])["_type"] == "Int8Tensor")
    record = json.loads(metadata[name])
    record["_type"] = to
    metadata[name] = json.dumps(record)
    return name
