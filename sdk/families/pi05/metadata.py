"""GGUF metadata <-> Pi05Config, using the released ActQuant key names.

The released file stores vision and action-expert hyper-parameters but not the PaliGemma LLM
ones (its runtime hard-codes them). We write the same keys plus `pi05.llm.*` for the LLM, and
when reading a file that lacks a key we fall back to the real pi0.5 value, never a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import FULL, ExpertConfig, LLMConfig, Pi05Config, VisionConfig

ARCH = "pi05"

# (GGUF key, config path) pairs; config path is "section.field" or "field".
_KEYS: list[tuple[str, str]] = [
    ("clip.vision.embedding_length", "vision.hidden_size"),
    ("clip.vision.attention.head_count", "vision.num_heads"),
    ("clip.vision.feed_forward_length", "vision.intermediate_size"),
    ("clip.vision.block_count", "vision.num_layers"),
    ("clip.vision.image_size", "vision.image_size"),
    ("clip.vision.patch_size", "vision.patch_size"),
    ("clip.vision.attention.layer_norm_epsilon", "vision.layer_norm_eps"),
    ("clip.vision.projection_dim", "llm.hidden_size"),
    ("projector.input_dim", "vision.hidden_size"),
    ("projector.output_dim", "llm.hidden_size"),
    ("embed.vocab_size", "llm.vocab_size"),
    ("embed.hidden_size", "llm.hidden_size"),
    ("pi05.llm.feed_forward_length", "llm.intermediate_size"),
    ("pi05.llm.block_count", "llm.num_layers"),
    ("pi05.llm.attention.head_count", "llm.num_heads"),
    ("pi05.llm.attention.head_count_kv", "llm.num_kv_heads"),
    ("pi05.llm.attention.head_dim", "llm.head_dim"),
    ("pi05.llm.rope.freq_base", "llm.rope_theta"),
    ("pi05.llm.attention.layer_norm_rms_epsilon", "llm.rms_norm_eps"),
    ("pi05_action.hidden_size", "expert.hidden_size"),
    ("pi05_action.intermediate_size", "expert.intermediate_size"),
    ("pi05_action.block_count", "expert.num_layers"),
    ("pi05_action.attention.head_count", "expert.num_heads"),
    ("pi05_action.attention.head_count_kv", "expert.num_kv_heads"),
    ("pi05_action.attention.head_dim", "expert.head_dim"),
    ("pi05_action.attention.layer_norm_rms_epsilon", "expert.rms_norm_eps"),
    ("pi05_action.action_dim", "action_dim"),
    ("pi05_action.state_dim", "state_dim"),
    ("pi05_action.action_horizon", "action_horizon"),
    ("pi05_action.timestep_sinusoidal_dim", "expert.hidden_size"),
    ("pi05_action.pali_hidden_size", "llm.hidden_size"),
    ("pi05_action.pali_intermediate_size", "llm.intermediate_size"),
]


def _get(cfg: Pi05Config, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def config_to_metadata(cfg: Pi05Config) -> dict[str, Any]:
    """Key -> python value (int -> uint32, float -> float32, bool, str, list) for GGUFWriter."""
    meta: dict[str, Any] = {"pi05.unified": True, "clip.projector_type": "pi0", "clip.has_vision_encoder": True,
                            "clip.use_gelu": True, "clip.vision.image_mean": [0.5, 0.5, 0.5],
                            "clip.vision.image_std": [0.5, 0.5, 0.5], "pi05_action.use_adaln": True,
                            "pi05.variant": cfg.variant}
    for key, path in _KEYS:
        meta[key] = _get(cfg, path)
    return meta


def llm_keys_from_shapes(meta: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The released exporter writes no `pi05.llm.*` keys (its C++ compiles Gemma-2B in); derive
    what the tensors themselves say instead of assuming 2B: layer count, widths and head counts
    (head_dim is shared with the action expert, whose key is written). RoPE base and epsilon
    cannot be read from shapes and stay at pi0.5's values."""
    out: dict[str, Any] = {}
    layers = {int(n.split(".")[2]) for n in shapes if n.startswith("pali.blk.")}
    head_dim = meta.get("pi05.llm.attention.head_dim", meta.get("pi05_action.attention.head_dim"))
    q, k, gate = (shapes.get(f"pali.blk.0.{t}.weight") for t in ("attn_q", "attn_k", "ffn_gate"))
    if layers:
        out["pi05.llm.block_count"] = max(layers) + 1
    if head_dim:
        out["pi05.llm.attention.head_dim"] = int(head_dim)
        if q:
            out["pi05.llm.attention.head_count"] = q[0] // int(head_dim)
        if k:
            out["pi05.llm.attention.head_count_kv"] = k[0] // int(head_dim)
    if gate:
        out["pi05.llm.feed_forward_length"] = gate[0]
    return out


def config_from_metadata(
    meta: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]] | None = None
) -> tuple[Pi05Config, list[str]]:
    """Build a config from GGUF metadata; returns (config, keys that were absent and defaulted).

    The stored vision MLP width is not a metadata key in released files; it is read from the
    shape of `v.blk.0.ffn_up.weight` (numpy order) when `tensor_shapes` is given.
    """
    sections: dict[str, dict[str, Any]] = {"vision": {}, "llm": {}, "expert": {}, "": {}}
    missing: list[str] = []
    meta = {**llm_keys_from_shapes(meta, tensor_shapes or {}), **meta}
    for key, path in _KEYS:
        section, _, field = path.rpartition(".")
        if key in meta:
            value = meta[key]
            default = _get(FULL, path)
            if isinstance(default, float):  # stored as float32: take its shortest decimal (1e-06, not 9.99e-07)
                value = float(str(np.float32(value)))
            sections[section][field] = type(default)(value)
        else:
            missing.append(key)
    vision = sections["vision"]
    ffn_up = (tensor_shapes or {}).get("v.blk.0.ffn_up.weight")
    vision["intermediate_size_stored"] = ffn_up[0] if ffn_up else vision.get(
        "intermediate_size", FULL.vision.intermediate_size_stored)
    cfg = Pi05Config(
        variant=str(meta.get("pi05.variant", "full")),
        vision=VisionConfig(**vision),
        llm=LLMConfig(**sections["llm"]),
        expert=ExpertConfig(**sections["expert"]),
        **sections[""],
    )
    return cfg, missing
