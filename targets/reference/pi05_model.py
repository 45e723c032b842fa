"""The pi0.5 forward pass in plain float32 NumPy: the oracle every other target is tested against.

Stages: SigLIP vision per present camera -> projector -> prefix [images | text] through the
Gemma LLM once, keeping per-layer K (post-RoPE) and V -> the action expert evaluated
`num_steps` times on the noisy action chunk, attending to that cached prefix, Euler-integrated
from t = 1 (noise) to t = 0 (actions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vla_edge.families.pi05.config import Pi05Config
from vla_edge.families.pi05.inputs import Pi05Inputs

from . import ops

Weights = Callable[[str], np.ndarray]  # name -> float32 array, numpy order [out, in]
# A layer stored in a quantised form the reference executes itself (W4A4): called with the input,
# the flow step and the number of steps, since per-step activation scales depend on both.
QuantizedLinear = Callable[[np.ndarray, "int | None", "int | None"], np.ndarray]
# Sees every matmul input before the product: (weight name, activation [tokens, n_in] as the
# layer receives it, (step, num_steps) inside the flow loop else None). `vla-edge calibrate`
# collects activation statistics through it; it must not modify the activation.
LinearObserver = Callable[[str, np.ndarray, "tuple[int, int] | None"], None]


@dataclass
class PrefixCache:
    keys: list[np.ndarray]  # per layer [n_prefix, kv_heads, head_dim], RoPE applied
    values: list[np.ndarray]  # per layer [n_prefix, kv_heads, head_dim]

    @property
    def length(self) -> int:
        return self.keys[0].shape[0]


class Pi05Reference:
    def __init__(self, config: Pi05Config, weights: Weights, quantized: dict[str, QuantizedLinear] | None = None):
        self.cfg = config
        self.w = weights
        self.quantized = quantized or {}
        self.observer: LinearObserver | None = None

    def _linear(self, x: np.ndarray, name: str, flow: tuple[int, int] | None = None,
                bias: str | None = None) -> np.ndarray:
        """x @ W.T (+ b), through the layer's quantised kernel when the pack stores it that way;
        `flow` = (step, num_steps) of the expert call (None outside the flow loop)."""
        if self.observer is not None:
            self.observer(name, x, flow)
        layer = self.quantized.get(name)
        if layer is None:
            return ops.linear(x, self.w(name), None if bias is None else self.w(bias))
        y = layer(x, *(flow or (None, None)))
        return y if bias is None else y + self.w(bias)

    # ---- vision -------------------------------------------------------------------------
    def vision(self, image: np.ndarray) -> np.ndarray:
        """One [S, S, 3] image in [-1, 1] -> [num_patches, llm_hidden] prefix tokens."""
        v, w = self.cfg.vision, self.w
        p, g = v.patch_size, v.image_size // v.patch_size
        # patch (gy, gx) flattened in the conv weight's (channel, ky, kx) order
        patches = image.reshape(g, p, g, p, 3).transpose(0, 2, 4, 1, 3).reshape(g * g, 3 * p * p)
        kernel = w("v.patch_embd.weight").reshape(v.hidden_size, -1)
        if self.observer is not None:
            self.observer("v.patch_embd.weight", patches, None)
        x = ops.linear(patches, kernel, w("v.patch_embd.bias")) + w("v.position_embd.weight")
        heads, lin = v.num_heads, self._linear
        for i in range(v.num_layers):
            b = f"v.blk.{i}."
            h = ops.layer_norm(x, w(b + "ln1.weight"), w(b + "ln1.bias"), v.layer_norm_eps)
            q, k, val = (
                lin(h, b + f"attn_{n}.weight", bias=b + f"attn_{n}.bias").reshape(len(h), heads, -1)
                for n in ("q", "k", "v")
            )
            x = x + lin(ops.attention(q, k, val), b + "attn_out.weight", bias=b + "attn_out.bias")
            h = ops.layer_norm(x, w(b + "ln2.weight"), w(b + "ln2.bias"), v.layer_norm_eps)
            h = ops.gelu_tanh(lin(h, b + "ffn_up.weight", bias=b + "ffn_up.bias"))
            x = x + lin(h, b + "ffn_down.weight", bias=b + "ffn_down.bias")
        x = ops.layer_norm(x, w("v.post_ln.weight"), w("v.post_ln.bias"), v.layer_norm_eps)
        return lin(x, "mm.0.weight", bias="mm.0.bias")

    def embed_text(self, tokens: np.ndarray) -> np.ndarray:
        """Token embeddings scaled by sqrt(hidden) (Gemma); image tokens are not scaled."""
        table = self.w("embed.weight")
        return table[tokens] * np.float32(np.sqrt(self.cfg.llm.hidden_size))

    # ---- prefix -------------------------------------------------------------------------
    def prefix_cache(self, prefix: np.ndarray) -> PrefixCache:
        """Run the LLM over the prefix (bidirectional) and keep each layer's K and V."""
        m, w, lin = self.cfg.llm, self.w, self._linear
        positions = np.arange(len(prefix))
        x, keys, values = prefix, [], []
        for i in range(m.num_layers):
            b = f"pali.blk.{i}."
            h = ops.gemma_rms_norm(x, w(b + "attn_norm.weight"), m.rms_norm_eps)
            q = ops.rope(lin(h, b + "attn_q.weight").reshape(len(h), m.num_heads, m.head_dim),
                         positions, m.rope_theta)
            k = ops.rope(lin(h, b + "attn_k.weight").reshape(len(h), m.num_kv_heads, m.head_dim),
                         positions, m.rope_theta)
            val = lin(h, b + "attn_v.weight").reshape(len(h), m.num_kv_heads, m.head_dim)
            keys.append(k)
            values.append(val)
            x = x + lin(ops.attention(q, k, val), b + "attn_o.weight")
            h = ops.gemma_rms_norm(x, w(b + "ffn_norm.weight"), m.rms_norm_eps)
            gated = ops.gelu_tanh(lin(h, b + "ffn_gate.weight")) * lin(h, b + "ffn_up.weight")
            x = x + lin(gated, b + "ffn_down.weight")
        return PrefixCache(keys, values)

    # ---- action expert ------------------------------------------------------------------
    def time_condition(self, t: float, flow: tuple[int, int] | None = None) -> np.ndarray:
        cfg, lin = self.cfg, self._linear
        emb = ops.sinusoidal_time(t, cfg.expert.hidden_size, cfg.time_min_period, cfg.time_max_period)
        h = ops.silu(lin(emb, "action.timestep_mlp.in.weight", flow, "action.timestep_mlp.in.bias"))
        return ops.silu(lin(h, "action.timestep_mlp.out.weight", flow, "action.timestep_mlp.out.bias"))

    def velocity(self, x_t: np.ndarray, t: float, cache: PrefixCache,
                 flow: tuple[int, int] | None = None) -> np.ndarray:
        """Flow-matching velocity for the noisy chunk x_t [horizon, action_dim] at time t;
        `flow` = (step, num_steps) selects quantised layers' per-step activation scales."""
        e, theta = self.cfg.expert, self.cfg.llm.rope_theta

        def lin(x: np.ndarray, name: str, bias: str | None = None) -> np.ndarray:
            return self._linear(x, name, flow, bias)

        def ada(x: np.ndarray, cond: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
            return ops.ada_rms_modulate(x, lin(cond, name + ".weight", name + ".bias"), e.rms_norm_eps)

        cond = self.time_condition(t, flow)
        x = lin(x_t, "action.action_in.weight", "action.action_in.bias")
        positions = cache.length + np.arange(len(x))
        for i in range(e.num_layers):
            b = f"action.blk.{i}."
            h, gate = ada(x, cond, b + "attn_norm")
            q = ops.rope(lin(h, b + "attn_q.weight").reshape(len(h), e.num_heads, e.head_dim), positions, theta)
            k = ops.rope(lin(h, b + "attn_k.weight").reshape(len(h), e.num_kv_heads, e.head_dim), positions, theta)
            val = lin(h, b + "attn_v.weight").reshape(len(h), e.num_kv_heads, e.head_dim)
            keys = np.concatenate([cache.keys[i], k])
            values = np.concatenate([cache.values[i], val])
            x = x + gate * lin(ops.attention(q, keys, values), b + "attn_output.weight")
            h, gate = ada(x, cond, b + "ffn_norm")
            gated = ops.gelu_tanh(lin(h, b + "ffn_gate.weight")) * lin(h, b + "ffn_up.weight")
            x = x + gate * lin(gated, b + "ffn_down.weight")
        h, _ = ada(x, cond, "action.output_norm")
        return lin(h, "action.action_out.weight", "action.action_out.bias")

    # ---- whole pipeline -----------------------------------------------------------------
    def sample_actions(self, inputs: Pi05Inputs) -> tuple[np.ndarray, dict[str, float]]:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        image_tokens = [self.vision(img) for img in inputs.images]
        timings["vision"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        prefix = np.concatenate(image_tokens + [self.embed_text(inputs.tokens)]).astype(np.float32)
        cache = self.prefix_cache(prefix)
        timings["prefix"] = (time.perf_counter() - start) * 1e3

        x = inputs.noise.astype(np.float32).copy()
        dt = -1.0 / inputs.num_steps
        expert_start = time.perf_counter()
        for step in range(inputs.num_steps):
            step_start = time.perf_counter()
            t = 1.0 - step / inputs.num_steps
            x = x + np.float32(dt) * self.velocity(x, t, cache, (step, inputs.num_steps))
            timings[f"expert_step_{step}"] = (time.perf_counter() - step_start) * 1e3
        timings["expert_total"] = (time.perf_counter() - expert_start) * 1e3
        return x, timings
