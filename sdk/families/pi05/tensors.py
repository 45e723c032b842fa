"""The pi0.5 tensor inventory, named exactly as in the released ActQuant `pi05.gguf`.

Shapes are numpy order [out, in] (GGUF stores ne reversed: ne0 = in). Every consumer — synth,
verify, the reference target, the native core, importers and quantize recipes — derives its
view of the weights from `tensor_specs(config)`, so a name or shape lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Pi05Config

# Tensor groups: the unit quantisation recipes and pack manifests talk about.
GROUPS = ("vision", "projector", "embedding", "llm", "action_expert")

K_QUANT_BLOCK = 256  # K-quant super-block: linear weights may store their input dim padded to this


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # logical numpy shape [out, in]
    group: str
    # Linear weight whose input (last) dim may be stored zero-padded up to a multiple of 256
    # so it can use K-quants (the released vision tower does this: 1152 -> 1280).
    pad_input_ok: bool = False
    # Kept out of quantisation by every recipe (norms, biases, sensitive projections).
    sensitive: bool = False

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2

    def allowed_shapes(self) -> list[tuple[int, ...]]:
        shapes = [self.shape]
        if self.pad_input_ok:
            n_in = self.shape[-1]
            padded = -(-n_in // K_QUANT_BLOCK) * K_QUANT_BLOCK
            if padded != n_in:
                shapes.append(self.shape[:-1] + (padded,))
        return shapes


def _vision(cfg: Pi05Config) -> list[TensorSpec]:
    v = cfg.vision
    h, ffn = v.hidden_size, v.intermediate_size_stored
    specs = [
        TensorSpec("v.patch_embd.weight", (h, 3, v.patch_size, v.patch_size), "vision", sensitive=True),
        TensorSpec("v.patch_embd.bias", (h,), "vision"),
        TensorSpec("v.position_embd.weight", (v.num_patches, h), "vision", sensitive=True),
    ]
    for i in range(v.num_layers):
        p = f"v.blk.{i}."
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            specs += [TensorSpec(p + proj + ".weight", (h, h), "vision", pad_input_ok=True),
                      TensorSpec(p + proj + ".bias", (h,), "vision")]
        for ln in ("ln1", "ln2"):
            specs += [TensorSpec(p + ln + ".weight", (h,), "vision"), TensorSpec(p + ln + ".bias", (h,), "vision")]
        specs += [
            TensorSpec(p + "ffn_up.weight", (ffn, h), "vision", pad_input_ok=True),
            TensorSpec(p + "ffn_up.bias", (ffn,), "vision"),
            TensorSpec(p + "ffn_down.weight", (h, ffn), "vision", pad_input_ok=True),
            TensorSpec(p + "ffn_down.bias", (h,), "vision"),
        ]
    specs += [TensorSpec("v.post_ln.weight", (h,), "vision"), TensorSpec("v.post_ln.bias", (h,), "vision")]
    return specs


def _projector(cfg: Pi05Config) -> list[TensorSpec]:
    d, h = cfg.llm.hidden_size, cfg.vision.hidden_size
    return [TensorSpec("mm.0.weight", (d, h), "projector", sensitive=True),
            TensorSpec("mm.0.bias", (d,), "projector")]


def _llm(cfg: Pi05Config) -> list[TensorSpec]:
    m = cfg.llm
    d, q, kv = m.hidden_size, m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
    specs = [TensorSpec("embed.weight", (m.vocab_size, d), "embedding")]
    for i in range(m.num_layers):
        p = f"pali.blk.{i}."
        specs += [
            TensorSpec(p + "attn_norm.weight", (d,), "llm"),
            TensorSpec(p + "attn_q.weight", (q, d), "llm", pad_input_ok=True),
            TensorSpec(p + "attn_k.weight", (kv, d), "llm", pad_input_ok=True),
            TensorSpec(p + "attn_v.weight", (kv, d), "llm", pad_input_ok=True),
            TensorSpec(p + "attn_o.weight", (d, q), "llm", pad_input_ok=True),
            TensorSpec(p + "ffn_norm.weight", (d,), "llm"),
            TensorSpec(p + "ffn_gate.weight", (m.intermediate_size, d), "llm", pad_input_ok=True),
            TensorSpec(p + "ffn_up.weight", (m.intermediate_size, d), "llm", pad_input_ok=True),
            TensorSpec(p + "ffn_down.weight", (d, m.intermediate_size), "llm", pad_input_ok=True),
        ]
    return specs


def _expert(cfg: Pi05Config) -> list[TensorSpec]:
    e = cfg.expert
    w, q, kv, a = e.hidden_size, e.num_heads * e.head_dim, e.num_kv_heads * e.head_dim, cfg.action_dim
    g = "action_expert"
    specs = [
        TensorSpec("action.action_in.weight", (w, a), g, sensitive=True),
        TensorSpec("action.action_in.bias", (w,), g),
        TensorSpec("action.action_out.weight", (a, w), g, sensitive=True),
        TensorSpec("action.action_out.bias", (a,), g),
        TensorSpec("action.timestep_mlp.in.weight", (w, w), g, sensitive=True),
        TensorSpec("action.timestep_mlp.in.bias", (w,), g),
        TensorSpec("action.timestep_mlp.out.weight", (w, w), g, sensitive=True),
        TensorSpec("action.timestep_mlp.out.bias", (w,), g),
        # AdaRMSNorm modulation Dense: cond -> [scale | shift | gate].
        TensorSpec("action.output_norm.weight", (3 * w, w), g, sensitive=True),
        TensorSpec("action.output_norm.bias", (3 * w,), g),
    ]
    for i in range(e.num_layers):
        p = f"action.blk.{i}."
        specs += [
            TensorSpec(p + "attn_q.weight", (q, w), g, pad_input_ok=True),
            TensorSpec(p + "attn_k.weight", (kv, w), g, pad_input_ok=True),
            TensorSpec(p + "attn_v.weight", (kv, w), g, pad_input_ok=True),
            TensorSpec(p + "attn_output.weight", (w, q), g, pad_input_ok=True),
            TensorSpec(p + "attn_norm.weight", (3 * w, w), g, sensitive=True),
            TensorSpec(p + "attn_norm.bias", (3 * w,), g),
            TensorSpec(p + "ffn_norm.weight", (3 * w, w), g, sensitive=True),
            TensorSpec(p + "ffn_norm.bias", (3 * w,), g),
            TensorSpec(p + "ffn_gate.weight", (e.intermediate_size, w), g, pad_input_ok=True),
            TensorSpec(p + "ffn_up.weight", (e.intermediate_size, w), g, pad_input_ok=True),
            TensorSpec(p + "ffn_down.weight", (w, e.intermediate_size), g, pad_input_ok=True),
        ]
    return specs


def tensor_specs(cfg: Pi05Config) -> dict[str, TensorSpec]:
    """All model tensors in file order (vision, projector, embedding, llm, expert), by name."""
    specs = _vision(cfg) + _projector(cfg) + _llm(cfg) + _expert(cfg)
    return {s.name: s for s in specs}


def parameter_count(cfg: Pi05Config) -> int:
    total = 0
    for spec in tensor_specs(cfg).values():
        n = 1
        for dim in spec.shape:
            n *= dim
        total += n
    return total
