"""Which weight matrices one pi0.5 inference multiplies, with how many tokens and how often.

The benchmark times ggml's own matmul on exactly these (shape, type, tokens) triples to get the
ceiling the whole pipeline is compared with, so this mirrors what the native graph computes:
only present cameras, real prompt tokens, the last prefix layer's K/V only, and per flow step
the action tokens through the expert plus one conditioning token through the time MLP and the
AdaRMSNorm modulation layers. The token embedding is a row lookup, not a matmul.
Vision products carry all present cameras' patches at once, as the core runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Pi05Config


@dataclass(frozen=True)
class MatmulUse:
    tensor: str
    n_tokens: int
    calls: int  # per inference


def matmul_workload(cfg: Pi05Config, n_images: int, n_text_tokens: int, num_steps: int) -> list[MatmulUse]:
    v, m, e = cfg.vision, cfg.llm, cfg.expert
    n_vis = n_images * v.num_patches
    uses = [MatmulUse("v.patch_embd.weight", n_vis, 1), MatmulUse("mm.0.weight", n_vis, 1)]
    for i in range(v.num_layers):
        uses += [MatmulUse(f"v.blk.{i}.{t}.weight", n_vis, 1)
                 for t in ("attn_q", "attn_k", "attn_v", "attn_out", "ffn_up", "ffn_down")]
    n_prefix = n_vis + n_text_tokens
    for i in range(m.num_layers):
        names = ["attn_q", "attn_k", "attn_v"]
        if i < m.num_layers - 1:
            names += ["attn_o", "ffn_gate", "ffn_up", "ffn_down"]
        uses += [MatmulUse(f"pali.blk.{i}.{t}.weight", n_prefix, 1) for t in names]
    h = cfg.action_horizon
    uses += [MatmulUse(f"action.{t}.weight", h, num_steps) for t in ("action_in", "action_out")]
    uses += [MatmulUse(f"action.timestep_mlp.{t}.weight", 1, num_steps) for t in ("in", "out")]
    uses.append(MatmulUse("action.output_norm.weight", 1, num_steps))
    for i in range(e.num_layers):
        b = f"action.blk.{i}."
        uses += [MatmulUse(b + t + ".weight", h, num_steps)
                 for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
        uses += [MatmulUse(b + t + ".weight", 1, num_steps) for t in ("attn_norm", "ffn_norm")]
    return uses
