"""Quantisation recipes: which ggml type each tensor of a pack gets, and why.

A recipe is a rule per tensor group (see `families/pi05/tensors.GROUPS`) applied to the
family's tensor inventory. Rules that hold for every recipe:
- vectors (norms, biases) stay F32: they are tiny and every kernel reads them as float;
- tensors marked `sensitive` (patch/position embeddings, projector, action in/out projections,
  time MLP, AdaRMSNorm modulation) stay F16, as in the released ActQuant pack;
- a block type needs the input (last) dim to be a multiple of its block (32 for Q8_0, 256 for
  K-quants). A K-quant tensor whose spec allows it (`pad_input_ok`) is stored with zero columns
  appended up to the next multiple of 256 — the released vision tower does this (1152 -> 1280) and
  both targets pad activations to match; otherwise the tensor falls back to Q8_0, then F16.
Every padding and fallback is returned as an exception with its reason and lands in the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES

from ..errors import ConfigError

# rule(tensor name, layer index or None, number of layers in its stack) -> ggml type
Rule = Callable[[str, "int | None", int], str]


def _const(qtype: str) -> Rule:
    return lambda name, layer, n_layers: qtype


def _more_bits(layer: int | None, n_layers: int) -> bool:
    """llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one
    between them are the most sensitive to quantisation."""
    if layer is None:
        return False
    eighth = n_layers // 8
    return layer < eighth or layer >= n_layers - eighth or (layer - eighth) % 3 == 2


def _q4_k_m(name: str, layer: int | None, n_layers: int) -> str:
    """llama.cpp Q4_K_M: Q4_K, with Q6_K for attention values and FFN down-projections in the
    `use_more_bits` layers."""
    if re.search(r"\.(attn_v|ffn_down)\.weight$", name) and _more_bits(layer, n_layers):
        return "Q6_K"
    return "Q4_K"


def _actquant_llm(name: str, layer: int | None, n_layers: int) -> str:
    """Q3_K base; Q4_K for the projections that carry the most error (attention values and
    output, FFN down) and for FFN up in the `use_more_bits` layers. On pi0.5's Gemma-2B this
    averages 3.95 bits per weight (the '3.97' of the released mix)."""
    if re.search(r"\.(attn_v|attn_o|ffn_down)\.weight$", name):
        return "Q4_K"
    if name.endswith(".ffn_up.weight") and _more_bits(layer, n_layers):
        return "Q4_K"
    return "Q3_K"


RECIPES: dict[str, dict[str, Rule]] = {
    "f16": {"vision": _const("F16"), "embedding": _const("F16"), "llm": _const("F16"),
            "action_expert": _const("F16")},
    "q8_0": {"vision": _const("Q8_0"), "embedding": _const("Q8_0"), "llm": _const("Q8_0"),
             "action_expert": _const("Q8_0")},
    "q4_k_m": {"vision": _q4_k_m, "embedding": _const("Q8_0"), "llm": _q4_k_m, "action_expert": _q4_k_m},
    "actquant-3.97": {"vision": _const("Q4_K"), "embedding": _const("Q8_0"), "llm": _actquant_llm,
                      "action_expert": _const("F16")},
}

K_QUANT_BLOCK = 256


@dataclass(frozen=True)
class TensorPlan:
    ggml_type: str
    stored_shape: tuple[int, ...]  # numpy order; last dim may be padded
    note: str = ""  # non-empty when the rule was not applied as written


def _block(qtype: str) -> int:
    return GGML_QUANT_SIZES[GGMLQuantizationType[qtype]][0]


def _layer_of(name: str) -> int | None:
    m = re.search(r"\.blk\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def _stack_sizes(specs: dict[str, Any]) -> dict[str, int]:
    """Layers per stack prefix ('v', 'pali', 'action'), counted from the inventory itself."""
    sizes: dict[str, int] = {}
    for name in specs:
        layer = _layer_of(name)
        if layer is not None:
            prefix = name.split(".blk.")[0]
            sizes[prefix] = max(sizes.get(prefix, 0), layer + 1)
    return sizes


def require_recipe(recipe: str) -> dict[str, Rule]:
    if recipe not in RECIPES:
        raise ConfigError("--recipe", f"expected one of {sorted(RECIPES)}, got '{recipe}'")
    return RECIPES[recipe]


def plan_tensor(spec: Any, wanted: str) -> TensorPlan:
    """Fit `wanted` to the tensor's shape: pad for K-quants where allowed, else fall back."""
    n_in = spec.shape[-1]
    if n_in % _block(wanted) == 0:
        return TensorPlan(wanted, spec.shape)
    if _block(wanted) == K_QUANT_BLOCK and spec.pad_input_ok:
        padded = -(-n_in // K_QUANT_BLOCK) * K_QUANT_BLOCK
        return TensorPlan(wanted, spec.shape[:-1] + (padded,),
                          f"{wanted}: input dim {n_in} stored zero-padded to {padded}")
    for fallback in ("Q8_0", "F16"):
        if n_in % _block(fallback) == 0:
            return TensorPlan(fallback, spec.shape,
                              f"{fallback} instead of {wanted}: input dim {n_in} is not a multiple of {_block(wanted)}")
    raise AssertionError("F16 has block size 1")  # pragma: no cover


def plan_pack(specs: dict[str, Any], recipe: str) -> dict[str, TensorPlan]:
    """Tensor name -> how it is stored under `recipe` (in the inventory's order)."""
    rules = require_recipe(recipe)
    stacks = _stack_sizes(specs)
    plans: dict[str, TensorPlan] = {}
    for name, spec in specs.items():
        if not spec.is_matrix:
            plans[name] = TensorPlan("F32", spec.shape)
        elif spec.sensitive or spec.group not in rules:
            plans[name] = TensorPlan("F16", spec.shape)
        else:
            layer = _layer_of(name)
            n_layers = stacks.get(name.split(".blk.")[0], 0) if layer is not None else 0
            plans[name] = plan_tensor(spec, rules[spec.group](name, layer, n_layers))
    return plans
