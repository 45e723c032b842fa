"""openpi / LeRobot pi0.5 PyTorch checkpoints (`model.safetensors`, fp32 / bf16 / fp16) -> an
F32 or F16 pack; GGUF quantisation recipes follow with `vla-edge pack quantize`.

Source key layout (from the ActQuant exporter notes, shared/reference/actquant-pi05-gguf.md 2.2):
`paligemma_with_expert.paligemma.model.{vision_tower.vision_model, multi_modal_projector,
language_model}.*`, `paligemma_with_expert.gemma_expert.model.*`, `action_in_proj`,
`action_out_proj`, `time_mlp_in`, `time_mlp_out`; LeRobot prefixes everything with `model.`;
older transformers releases wrote `paligemma.language_model.model.*` / `paligemma.vision_tower.*`,
accepted as aliases. Gemma RMSNorm weights are stored as deltas from one, as in our packs.

The text embedding is `language_model.embed_tokens`: pi0.5 never uses the LM head. openpi's
converted checkpoints tie the two and safetensors keeps only `lm_head`, which then stands in for
the embedding. LeRobot 0.6.1 (transformers 5) saves both *untied*: after fine-tuning (or any
perturbation) they differ, and only `embed_tokens` is what LeRobot's forward reads - taking
`lm_head` there put the wrong matrix into the prefix (1.2% chunk error against LeRobot, issue 15).

The structure is read from the tensors themselves (layer counts, widths, vocabulary, action
width). Two facts are not in any shape and are taken as documented assumptions: every pi0.5
Gemma stack is multi-query (one KV head; gemma_2b, gemma_300m and openpi's dummy all are), so
head_dim is K's output width; and the SigLIP head count follows from the tower width (So400m:
1152 -> 16; vla-edge's tiny test tower: 96 -> 4). Action horizon, flow steps and prompt length
come from config.json when it has them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, PackError
from ..packs.gguf_io import PlannedTensor, write_gguf
from ..packs.writer import PackBuilder
from .common import (check_tensor_shapes, check_tokenizer, lerobot_stats, openpi_stats, read_json_object,
                     robot_spaces_for_stats, safetensors_header)
from .gemma_variants import check_stacks

WEIGHTS_NAME = "model.safetensors"
K_ALIGN = 256  # the released layout pads the SigLIP MLP (4304 -> 4352) so K-quants can be used later
F16_MAX = float(np.finfo(np.float16).max)

_VIS = "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
_PALI = "paligemma_with_expert.paligemma.model.language_model."
_EXP = "paligemma_with_expert.gemma_expert.model."
_ALIASES = (  # older transformers layouts -> the current one
    ("paligemma_with_expert.paligemma.language_model.model.", _PALI),
    ("paligemma_with_expert.paligemma.language_model.lm_head.", "paligemma_with_expert.paligemma.lm_head."),
    ("paligemma_with_expert.paligemma.vision_tower.", "paligemma_with_expert.paligemma.model.vision_tower."),
    ("paligemma_with_expert.paligemma.multi_modal_projector.",
     "paligemma_with_expert.paligemma.model.multi_modal_projector."),
)
_GEMMA_LAYER = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                "self_attn.v_proj.weight": "attn_v.weight",
                "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
                "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(re.escape(_VIS) + r"embeddings\.patch_embedding\.(weight|bias)$"), lambda m: f"v.patch_embd.{m[1]}"),
    (re.compile(re.escape(_VIS) + r"embeddings\.position_embedding\.weight$"), lambda m: "v.position_embd.weight"),
    (re.compile(re.escape(_VIS) + r"post_layernorm\.(weight|bias)$"), lambda m: f"v.post_ln.{m[1]}"),
    (re.compile(re.escape(_VIS) + r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$"),
     lambda m: f"v.blk.{m[1]}.{_SIGLIP_LAYER.get(m[2], '?' + m[2])}.{m[3]}"),
    (re.compile(r"paligemma_with_expert\.paligemma\.model\.multi_modal_projector\.linear\.(weight|bias)$"),
     lambda m: f"mm.0.{m[1]}"),
    (re.compile(r"paligemma_with_expert\.paligemma\.lm_head\.weight$"), lambda m: "embed.weight"),
    (re.compile(re.escape(_PALI) + r"embed_tokens\.weight$"), lambda m: "embed.weight"),
    (re.compile(re.escape(_PALI) + r"layers\.(\d+)\.(.+)$"),
     lambda m: f"pali.blk.{m[1]}.{_GEMMA_LAYER.get(m[2], '?' + m[2])}".replace("attn_output", "attn_o")),
    (re.compile(re.escape(_EXP) + r"layers\.(\d+)\.(input|post_attention)_layernorm\.dense\.(weight|bias)$"),
     lambda m: f"action.blk.{m[1]}.{'attn' if m[2] == 'input' else 'ffn'}_norm.{m[3]}"),
    (re.compile(re.escape(_EXP) + r"layers\.(\d+)\.(.+)$"),
     lambda m: f"action.blk.{m[1]}.{_GEMMA_LAYER.get(m[2], '?' + m[2])}"),
    (re.compile(re.escape(_EXP) + r"norm\.dense\.(weight|bias)$"), lambda m: f"action.output_norm.{m[1]}"),
    (re.compile(r"action_in_proj\.(weight|bias)$"), lambda m: f"action.action_in.{m[1]}"),
    (re.compile(r"action_out_proj\.(weight|bias)$"), lambda m: f"action.action_out.{m[1]}"),
    (re.compile(r"time_mlp_(in|out)\.(weight|bias)$"), lambda m: f"action.timestep_mlp.{m[1]}.{m[2]}"),
]
_SIGLIP_LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.out_proj": "attn_out", "layer_norm1": "ln1", "layer_norm2": "ln2",
                 "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down"}
# Present in real checkpoints, not used by pi0.5 inference (the prefix's final norm, the expert's
# unused LM head / embedding).
_UNUSED = (re.compile(re.escape(_PALI) + r"norm\.weight$"),
           re.compile(r"paligemma_with_expert\.gemma_expert\.(lm_head|model\.embed_tokens)\.weight$"))
# Tensors that say "this is not pi0.5" (pi0 has a continuous state projection and an action-time MLP).
_OTHER_FAMILY = {"state_proj.weight": "pi0 (it has state_proj)", "action_time_mlp_in.weight": "pi0 (action_time_mlp)"}


@dataclass(frozen=True)
class SourceTensor:
    """Where a pack tensor comes from: its source key, shape and dtype as stored there."""

    key: str
    shape: tuple[int, ...]
    dtype: str


def canonical_key(key: str, prefix: str) -> str:
    key = key[len(prefix):] if prefix and key.startswith(prefix) else key
    for old, new in _ALIASES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def key_prefix(keys: list[str]) -> str:
    """LeRobot saves the policy's state dict, whose network sits under `model.`."""
    return "model." if keys and all(k.startswith("model.") for k in keys) else ""


def map_keys(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str], where: str,
             ignore: Callable[[str], bool] = lambda key: False) -> dict[str, SourceTensor]:
    """pack tensor name -> source tensor; unknown keys are refused (a checkpoint of another
    model must not import as a half-filled pi0.5)."""
    prefix = key_prefix(list(shapes))
    out: dict[str, SourceTensor] = {}
    unknown = []
    for key in shapes:
        if ignore(key):
            continue
        canon = canonical_key(key, prefix)
        if canon in _OTHER_FAMILY:
            raise PackError(f"{where}: tensor '{key}'", f"this is a {_OTHER_FAMILY[canon]} checkpoint, not pi0.5; "
                                                        "only pi0.5 is supported")
        if any(p.match(canon) for p in _UNUSED):
            continue
        name = next((rule(m) for pattern, rule in _RULES if (m := pattern.match(canon))), None)
        if name is None or "?" in name:
            unknown.append(key)
            continue
        if name == "embed.weight" and name in out and "lm_head" in key:
            continue  # the forward embeds with embed_tokens; lm_head only stands in when it is absent
        out[name] = SourceTensor(key, tuple(shapes[key]), dtypes[key])
    if unknown:
        raise PackError(where, f"{len(unknown)} tensor(s) that are not part of pi0.5, e.g. {unknown[:3]} "
                               "(expected an openpi / LeRobot pi0.5 checkpoint)")
    return out


def _count(names: Mapping[str, Any], prefix: str) -> int:
    return len({n.split(".")[2] for n in names if n.startswith(prefix)})


def _vision_heads(hidden: int) -> int:
    from ..families.pi05.config import VARIANTS

    known = {v.vision.hidden_size: v.vision.num_heads for v in VARIANTS.values()}
    if hidden not in known:
        raise PackError("v.patch_embd.weight", f"vision width {hidden}: the SigLIP head count is not stored in the "
                                               f"weights and is known only for widths {sorted(known)}")
    return known[hidden]


def _first(cfg_json: Mapping[str, Any], *keys: str) -> Any:
    return next((cfg_json[k] for k in keys if cfg_json.get(k) is not None), None)


def derive_config(src: Mapping[str, SourceTensor], cfg_json: Mapping[str, Any], where: str) -> tuple[Any, list[str]]:
    """pi0.5 config from the tensors' shapes (+ config.json for horizon, steps, prompt length);
    returns (config, what was taken from pi0.5 defaults)."""
    from ..families.pi05.metadata import config_from_metadata, llm_keys_from_shapes

    need = ("v.patch_embd.weight", "v.position_embd.weight", "v.blk.0.ffn_up.weight", "embed.weight",
            "action.action_in.weight", "action.blk.0.attn_q.weight", "action.blk.0.attn_k.weight",
            "action.blk.0.ffn_gate.weight")
    for name in need:
        if name not in src:
            raise PackError(f"{where}: tensor for '{name}'", "missing (not a complete pi0.5 checkpoint)")
    shape = {n: s.shape for n, s in src.items()}
    hidden, _, patch, _ = shape["v.patch_embd.weight"]
    side = math.isqrt(shape["v.position_embd.weight"][0])
    head_dim = shape["action.blk.0.attn_k.weight"][0]  # multi-query (see module docstring)
    meta: dict[str, Any] = {
        "clip.vision.embedding_length": hidden, "clip.vision.patch_size": patch, "clip.vision.image_size": side * patch,
        "clip.vision.attention.head_count": _vision_heads(hidden),
        "clip.vision.feed_forward_length": shape["v.blk.0.ffn_up.weight"][0],
        "clip.vision.block_count": _count(shape, "v.blk."),
        "embed.vocab_size": shape["embed.weight"][0], "embed.hidden_size": shape["embed.weight"][1],
        "pi05_action.hidden_size": shape["action.action_in.weight"][0],
        "pi05_action.intermediate_size": shape["action.blk.0.ffn_gate.weight"][0],
        "pi05_action.block_count": _count(shape, "action.blk."),
        "pi05_action.attention.head_dim": head_dim, "pi05_action.attention.head_count_kv": 1,
        "pi05_action.attention.head_count": shape["action.blk.0.attn_q.weight"][0] // head_dim,
        "pi05_action.action_dim": shape["action.action_in.weight"][1],
    }
    state_dim = _first(cfg_json, "max_state_dim", "state_dim")
    meta["pi05_action.state_dim"] = int(state_dim) if state_dim else meta["pi05_action.action_dim"]
    horizon = _first(cfg_json, "action_horizon", "chunk_size", "n_action_steps")
    if horizon:
        meta["pi05_action.action_horizon"] = int(horizon)
    meta.update(llm_keys_from_shapes(meta, shape))
    meta["pi05.variant"] = "checkpoint"
    stored = dict(shape)
    stored["v.blk.0.ffn_up.weight"] = (padded(shape["v.blk.0.ffn_up.weight"][0]),) + shape["v.blk.0.ffn_up.weight"][1:]
    try:
        cfg, defaulted = config_from_metadata(meta, stored)
        extra = {k: int(v) for k, v in (("num_flow_steps", _first(cfg_json, "num_inference_steps", "num_steps")),
                                        ("max_token_len", _first(cfg_json, "tokenizer_max_length", "max_token_len")))
                 if v}
        cfg = type(cfg).model_validate({**cfg.model_dump(), **extra})
    except ValueError as exc:
        raise PackError(f"{where}", f"tensor shapes do not form a pi0.5 config: {exc}") from exc
    defaulted = [k for k in defaulted if k not in ("pi05_action.timestep_sinusoidal_dim",)]
    return cfg, defaulted + [f"config.json:{k}" for k in ("num_flow_steps", "max_token_len") if k not in extra]


def padded(n: int) -> int:
    return -(-n // K_ALIGN) * K_ALIGN


def pad_vision_mlp(name: str, values: np.ndarray, real: int, stored: int) -> np.ndarray:
    """Zero rows/columns from the SigLIP MLP's real width to its stored width (math unchanged)."""
    if stored == real or not name.startswith("v.blk."):
        return values
    if name.endswith("ffn_up.weight") or name.endswith("ffn_up.bias"):
        return np.concatenate([values, np.zeros((stored - real,) + values.shape[1:], values.dtype)])
    if name.endswith("ffn_down.weight"):
        return np.concatenate([values, np.zeros((values.shape[0], stored - real), values.dtype)], axis=1)
    return values


def logical_shapes(src: Mapping[str, SourceTensor], cfg: Any) -> dict[str, tuple[int, ...]]:
    """The shapes the pack will store (SigLIP MLP padded to its stored width)."""
    real, stored = cfg.vision.intermediate_size, cfg.vision.intermediate_size_stored
    probe = {n: np.empty(s.shape, np.uint8) for n, s in src.items() if n.startswith("v.blk.") and "ffn_" in n}
    out = {n: s.shape for n, s in src.items()}
    out.update({n: pad_vision_mlp(n, a, real, stored).shape for n, a in probe.items()})
    return out


def find_norm_stats(root: Path, override: Path | None) -> tuple[dict[str, Any], Path]:
    """openpi: norm_stats.json beside the weights or under assets/<asset_id>/; LeRobot: the
    preprocessor's normalizer safetensors."""
    if override is not None:
        paths = [override]
    else:
        paths = [root / "norm_stats.json"] if (root / "norm_stats.json").is_file() else []
        paths = paths or sorted(root.glob("assets/*/norm_stats.json")) or sorted(
            root.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))
    if not paths:
        raise PackError(str(root), "no normalisation statistics: expected norm_stats.json, assets/*/norm_stats.json "
                                   "(openpi) or policy_preprocessor_step_*_normalizer_processor.safetensors "
                                   "(LeRobot); or pass --norm-stats PATH")
    if len(paths) > 1:
        raise PackError(str(root), f"several statistics files {[str(p) for p in paths]}; pick one with --norm-stats")
    path = paths[0]
    if not path.is_file():
        raise PackError(str(path), "missing")
    data = lerobot_stats(path) if path.suffix == ".safetensors" else read_json_object(path)
    return openpi_stats(data, str(path)), path


def matrix_type(dtype: str, source_dtypes: set[str]) -> str:
    if dtype == "auto":
        return "F32" if source_dtypes <= {"F32", "F64", "torch.float32", "torch.float64"} else "F16"
    if dtype.upper() not in ("F32", "F16"):
        raise ConfigError("--dtype", f"expected auto, f32 or f16, got '{dtype}'")
    return dtype.upper()


def plan_tensors(values: Callable[[str], np.ndarray], shapes: Mapping[str, tuple[int, ...]], specs: Mapping[str, Any],
                 matrix: str, where: str) -> tuple[list[PlannedTensor], dict[str, str]]:
    """Pack tensors in inventory order; 1-D ones F32, matrices `matrix`. A matrix whose values do
    not fit F16 stays F32 (recorded as an exception) rather than turning into inf."""
    planned, exceptions = [], {}
    for name, spec in specs.items():
        ggml_type = "F32" if len(spec.shape) == 1 else matrix
        if ggml_type == "F16":
            peak = float(np.max(np.abs(values(name))))
            if not np.isfinite(peak):
                raise PackError(f"{where}: tensor '{name}'", "holds inf/nan")
            if peak > F16_MAX:
                ggml_type, exceptions[name] = "F32", f"F32: |values| up to {peak:.3g} exceed F16's range"
        planned.append(PlannedTensor(name, tuple(shapes[name]), ggml_type, lambda n=name: values(n)))
    return planned, exceptions


@dataclass
class Checkpoint:
    """A checked openpi / LeRobot-layout checkpoint: where everything is and the config it forms."""

    weights: Path
    sources: dict[str, SourceTensor]
    cfg: Any
    defaulted: list[str]
    specs: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]  # as the pack will store them
    stats: dict[str, Any]
    stats_path: Path
    spaces: dict[str, Any]
    tokenizer: Path


def weights_file(src: str | Path, what: str) -> Path:
    src = Path(src)
    weights = src if src.is_file() else src / WEIGHTS_NAME
    if not weights.is_file():
        raise PackError(str(weights), f"missing: {what} is a directory holding {WEIGHTS_NAME}")
    return weights


def read_checkpoint(weights: Path, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str], robot: str,
                    tokenizer: Path | None, norm_stats: Path | None,
                    check_layers: Callable[[dict[str, SourceTensor]], None] = lambda sources: None) -> Checkpoint:
    """Everything is checked here, before a byte of the pack is written. `shapes`/`dtypes` are
    the logical tensors (an importer of a quantised layout passes its dequantised view)."""
    from ..families.pi05.tensors import tensor_specs

    root = weights.parent
    cfg_json = read_json_object(root / "config.json") if (root / "config.json").is_file() else {}
    if cfg_json.get("type") not in (None, "pi05"):
        raise PackError(str(root / "config.json"), f"policy type '{cfg_json['type']}', expected 'pi05'")
    sources = map_keys(shapes, dtypes, str(weights))
    check_layers(sources)
    cfg, defaulted = derive_config(sources, cfg_json, str(weights))
    check_stacks(cfg_json, cfg, root / "config.json", weights)
    specs = tensor_specs(cfg)
    shapes_out = logical_shapes(sources, cfg)
    check_tensor_shapes(str(weights), shapes_out, specs)
    stats, stats_path = find_norm_stats(root, norm_stats)
    spaces = robot_spaces_for_stats(stats, robot, str(stats_path))
    tok = tokenizer or root / "tokenizer.model"
    check_tokenizer(tok)
    return Checkpoint(weights, sources, cfg, defaulted, specs, shapes_out, stats, stats_path, spaces, tok)


def finite_only(tensor: PlannedTensor, where: str) -> PlannedTensor:
    """The same tensor, refusing inf/nan values as they are produced: a damaged source must not
    become a pack that verifies (its checksums would be of the damage). Raw pre-quantised blocks
    are checked by their importer before planning."""
    def produce() -> np.ndarray:
        values = tensor.produce()
        if values.dtype != np.uint8 and not np.all(np.isfinite(values)):
            raise PackError(f"{where}: tensor '{tensor.name}'", f"holds {int(np.sum(~np.isfinite(values)))} inf/nan "
                                                                "value(s): the source file is damaged")
        return values

    return PlannedTensor(tensor.name, tensor.shape, tensor.ggml_type, produce)


def write_pack(ck: Checkpoint, out: str | Path, planned: list[PlannedTensor], recipe: str, source: dict[str, Any],
               exceptions: dict[str, str], overwrite: bool, golden: bool | None,
               targets: tuple[str, ...] = ("reference", "x86"), w4a4: Any = None) -> Path:
    """`w4a4`: the manifest's quantization.w4a4 section when some layers are W4A4 (reference only)."""
    from ..families.pi05.metadata import ARCH, config_to_metadata
    from .actquant import GOLDEN_AUTO_LIMIT_BYTES

    with PackBuilder(out, overwrite=overwrite) as builder:
        write_gguf(builder.staging / "pi05.gguf", ARCH, config_to_metadata(ck.cfg),
                   [finite_only(t, str(ck.weights)) for t in planned])
        (builder.staging / "tokenizer.model").write_bytes(ck.tokenizer.read_bytes())
        (builder.staging / "norm_stats.json").write_text(json.dumps(ck.stats, indent=1))
        want_golden = ck.weights.stat().st_size <= GOLDEN_AUTO_LIMIT_BYTES if golden is None else golden
        return builder.finish(
            name=f"pi05-{ck.weights.parent.name}-{recipe}", family="pi05", config=ck.cfg.model_dump(mode="json"),
            recipe=recipe, targets=list(targets), **ck.spaces,
            source={"path": str(ck.weights), "norm_stats": str(ck.stats_path),
                    "config_keys_defaulted": ck.defaulted, **source},
            golden_seed=0 if want_golden else None, quant_exceptions=exceptions, w4a4=w4a4,
        )


def import_checkpoint(src: str | Path, out: str | Path, robot: str = "ur3", overwrite: bool = False,
                      golden: bool | None = None, tokenizer: Path | None = None, norm_stats: Path | None = None,
                      dtype: str = "auto") -> Path:
    """Write an F32/F16 pack at `out` from an openpi / LeRobot pi0.5 checkpoint directory (or its
    model.safetensors)."""
    weights = weights_file(src, "an openpi / LeRobot pi0.5 checkpoint")
    shapes, dtypes, _ = safetensors_header(weights)
    ck = read_checkpoint(weights, shapes, dtypes, robot, tokenizer, norm_stats)
    source_dtypes = sorted({dtypes[s.key] for s in ck.sources.values()})
    matrix = matrix_type(dtype, set(source_dtypes))
    planned, exceptions = plan_tensors(SourceLoader(weights, ck.sources, ck.cfg), ck.shapes, ck.specs, matrix,
                                       str(weights))
    return write_pack(ck, out, planned, matrix.lower(), {
        "imported_from": "checkpoint", "robot_layout": robot, "source_dtypes": source_dtypes,
        "text_embedding": ck.sources["embed.weight"].key,
        "next_step": "vla-edge pack quantize for GGUF recipes (q8_0, q4_k_m, actquant-3.97)"},
        exceptions, overwrite, golden)


class SourceLoader:
    """Pack tensor name -> float32 values, read from the safetensors file on demand so only one
    tensor is in memory at a time (a full pi0.5 is ~3.4B parameters)."""

    def __init__(self, path: Path, sources: Mapping[str, SourceTensor], cfg: Any):
        self.path, self.sources, self.cfg = path, sources, cfg

    def __call__(self, name: str) -> np.ndarray:
        from safetensors import safe_open

        from .common import to_numpy

        with safe_open(str(self.path), framework="pt") as f:
            values = to_numpy(f.get_tensor(self.sources[name].key))
        v = self.cfg.vision
        return pad_vision_mlp(name, values, v.intermediate_size, v.intermediate_size_stored)
