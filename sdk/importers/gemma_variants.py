"""config.json's description of the two Gemma stacks, checked against the tensors.

openpi and LeRobot name each stack by variant (`paligemma_variant`, `action_expert_variant`), and
openpi's `gemma.get_config` fixes width, depth and MLP size per variant. A pruned export
(Shallow-π keeps fewer layers) states the depth it kept as `paligemma_depth` /
`action_expert_depth`, which overrides the variant's depth. The tensors decide what runs; a
config.json that says otherwise means files from different models were mixed, or a pruned model
whose config was never updated - either way someone must look before a robot runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import PackError


class GemmaShape(NamedTuple):
    width: int
    depth: int
    mlp_dim: int


# openpi src/openpi/models/gemma.py get_config (LoRA variants share their base's shape)
VARIANTS: dict[str, GemmaShape] = {
    "dummy": GemmaShape(64, 4, 128),
    "gemma_300m": GemmaShape(1024, 18, 4096),
    "gemma_300m_lora": GemmaShape(1024, 18, 4096),
    "gemma_2b": GemmaShape(2048, 18, 16384),
    "gemma_2b_lora": GemmaShape(2048, 18, 16384),
}
# stack -> (variant key, explicit depth key, what the stack is called in messages)
STACKS = {"llm": ("paligemma_variant", "paligemma_depth", "LLM"),
          "expert": ("action_expert_variant", "action_expert_depth", "action expert")}


def check_stacks(cfg_json: Mapping[str, Any], cfg: Any, config_path: Path, weights: Path) -> None:
    """Refuse when config.json's variant or stated depth disagrees with the tensors' shapes."""
    for stack, (variant_key, depth_key, label) in STACKS.items():
        found = getattr(cfg, stack)
        actual = GemmaShape(found.hidden_size, found.num_layers, found.intermediate_size)
        variant = cfg_json.get(variant_key)
        if variant is not None:
            declared = VARIANTS.get(str(variant))
            if declared is None:
                raise PackError(f"{config_path}: {variant_key}", f"unknown Gemma variant '{variant}' (known: "
                                                                 f"{', '.join(VARIANTS)})")
            if (declared.width, declared.mlp_dim) != (actual.width, actual.mlp_dim):
                raise PackError(f"{config_path}: {variant_key}",
                                f"'{variant}' is width {declared.width} / MLP {declared.mlp_dim}, but {weights.name}'s "
                                f"{label} is width {actual.width} / MLP {actual.mlp_dim}: config.json belongs to "
                                "another model")
        depth, source = cfg_json.get(depth_key), depth_key
        if depth is None and variant is not None:
            depth, source = VARIANTS[str(variant)].depth, f"{variant_key} '{variant}'"
        if depth is None:
            continue
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise PackError(f"{config_path}: {depth_key}", f"expected a positive layer count, got {depth!r}")
        if depth != actual.depth:
            raise PackError(f"{config_path}: {depth_key if source == depth_key else variant_key}",
                            f"{source} means {depth} {label} layers, but {weights.name} holds {actual.depth}; if "
                            f"the model was pruned, write the kept count into config.json as \"{depth_key}\": "
                            f"{actual.depth} (and check the file is the model you meant)")
