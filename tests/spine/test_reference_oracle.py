"""The NumPy reference against an implementation written by someone else.

SigLIP vision and every Gemma layer (RMSNorm, attention with MQA, rotary embedding, GeGLU MLP,
KV cache concatenation) are run with the PyTorch modules of the `transformers` package, loaded
with the same random weights. transformers has no pi0.5 adaptive-RMSNorm expert, so only the
AdaRMS modulation (3 lines), the sinusoidal time embedding and the Euler loop are written here
in torch; everything else in the expert comes from transformers' Gemma modules.

Tolerances (float32 on both sides, different summation orders):
  vision tokens after projector, prefix values:    rel-L2 <= 1e-5
  prefix keys (after RoPE):                         rel-L2 <= 1e-5 + 3 sqrt(2) (n - 1) 2^-24 (1.4e-4 at n = 535)
  final action chunk after 10 flow steps:          rel-L2 <= 1e-4
The keys' bound: transformers' rotary embedding rounds its angles p * f to float32 (p the position,
f <= 1 the frequency, itself a rounded float32), ours are float64 rounded once at cos/sin; each angle
may differ by up to ~3 (n - 1) 2^-24 rad, and a rotated pair's error is at most that times sqrt(2) its
norm. Random text embeddings with large norms weigh the last positions, whose angles differ most:
one run in ~20 measured 6.1e-5 against the flat 1e-5 this test had (2026-12-07).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers.cache_utils import DynamicCache  # noqa: E402
from transformers.models.gemma.modeling_gemma import (  # noqa: E402
    GemmaAttention,
    GemmaConfig,
    GemmaDecoderLayer,
    GemmaMLP,
    GemmaRotaryEmbedding,
)
from transformers.models.siglip.modeling_siglip import SiglipVisionConfig, SiglipVisionModel  # noqa: E402

from vla_edge.families.pi05.config import TINY  # noqa: E402
from vla_edge.families.pi05.inputs import Pi05Inputs  # noqa: E402
from vla_edge.packs.pack import Pack  # noqa: E402
from vla_edge.packs.writer import rel_l2  # noqa: E402
from vla_edge.targets.reference.pi05_model import Pi05Reference  # noqa: E402

torch.set_grad_enabled(False)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _set(module: torch.nn.Module, **params: np.ndarray) -> None:
    for name, value in params.items():
        target = module.get_parameter(name)
        assert tuple(target.shape) == value.shape, (name, target.shape, value.shape)
        target.copy_(_t(value))


@pytest.fixture(scope="module")
def setup(tiny_pack_dir):
    pack = Pack.open(tiny_pack_dir)
    weights = pack.weights.float32
    return pack, weights, Pi05Reference(pack.config, weights)


def _hf_vision(cfg, w):
    v = cfg.vision
    hf = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads, image_size=v.image_size, patch_size=v.patch_size,
        layer_norm_eps=v.layer_norm_eps, vision_use_head=False, attn_implementation="eager")).eval()
    m, real = hf, v.intermediate_size
    _set(m, **{"embeddings.patch_embedding.weight": w("v.patch_embd.weight"),
               "embeddings.patch_embedding.bias": w("v.patch_embd.bias"),
               "embeddings.position_embedding.weight": w("v.position_embd.weight"),
               "post_layernorm.weight": w("v.post_ln.weight"), "post_layernorm.bias": w("v.post_ln.bias")})
    for i in range(v.num_layers):
        b, layer = f"v.blk.{i}.", f"encoder.layers.{i}."
        params = {}
        for ours, theirs in (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                             ("attn_v", "self_attn.v_proj"), ("attn_out", "self_attn.out_proj"),
                             ("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
            params[layer + theirs + ".weight"] = w(b + ours + ".weight")
            params[layer + theirs + ".bias"] = w(b + ours + ".bias")
        # the pack stores the MLP zero-padded to a 256-multiple; transformers holds the real width
        params[layer + "mlp.fc1.weight"] = w(b + "ffn_up.weight")[:real]
        params[layer + "mlp.fc1.bias"] = w(b + "ffn_up.bias")[:real]
        params[layer + "mlp.fc2.weight"] = w(b + "ffn_down.weight")[:, :real]
        params[layer + "mlp.fc2.bias"] = w(b + "ffn_down.bias")
        _set(m, **params)
    return hf


def _gemma_config(hidden, inter, heads, kv, head_dim, eps, theta):
    return GemmaConfig(vocab_size=8, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=TINY.llm.num_layers,
                       num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, rms_norm_eps=eps,
                       rope_parameters={"rope_type": "default", "rope_theta": theta},
                       attn_implementation="eager", use_bidirectional_attention=True)


def _load_attn_mlp(attn: GemmaAttention, mlp: GemmaMLP, w, b: str, o_name: str) -> None:
    _set(attn, **{"q_proj.weight": w(b + "attn_q.weight"), "k_proj.weight": w(b + "attn_k.weight"),
                  "v_proj.weight": w(b + "attn_v.weight"), "o_proj.weight": w(b + o_name)})
    _set(mlp, **{"gate_proj.weight": w(b + "ffn_gate.weight"), "up_proj.weight": w(b + "ffn_up.weight"),
                 "down_proj.weight": w(b + "ffn_down.weight")})


def _hf_prefix_cache(cfg, w, prefix: np.ndarray) -> DynamicCache:
    m = cfg.llm
    gcfg = _gemma_config(m.hidden_size, m.intermediate_size, m.num_heads, m.num_kv_heads, m.head_dim,
                         m.rms_norm_eps, m.rope_theta)
    rotary = GemmaRotaryEmbedding(gcfg)
    cache = DynamicCache(config=gcfg)
    x = _t(prefix)[None]
    pos = torch.arange(len(prefix))[None]
    emb = rotary(x, pos)
    for i in range(m.num_layers):
        layer = GemmaDecoderLayer(gcfg, i).eval()
        b = f"pali.blk.{i}."
        _load_attn_mlp(layer.self_attn, layer.mlp, w, b, "attn_o.weight")
        _set(layer, **{"input_layernorm.weight": w(b + "attn_norm.weight"),
                       "post_attention_layernorm.weight": w(b + "ffn_norm.weight")})
        out = layer(x, attention_mask=None, position_ids=pos, past_key_values=cache, use_cache=True,
                    position_embeddings=emb)
        x = out[0] if isinstance(out, tuple) else out
    return cache


def _hf_actions(cfg, w, cache: DynamicCache, noise: np.ndarray, n_prefix: int) -> np.ndarray:
    e = cfg.expert
    gcfg = _gemma_config(e.hidden_size, e.intermediate_size, e.num_heads, e.num_kv_heads, e.head_dim,
                         e.rms_norm_eps, cfg.llm.rope_theta)
    rotary = GemmaRotaryEmbedding(gcfg)
    layers = []
    for i in range(e.num_layers):
        attn, mlp = GemmaAttention(gcfg, i).eval(), GemmaMLP(gcfg).eval()
        _load_attn_mlp(attn, mlp, w, f"action.blk.{i}.", "attn_output.weight")
        layers.append((attn, mlp))

    def lin(x, name):
        return x @ _t(w(name + ".weight")).T + _t(w(name + ".bias"))

    def ada(x, cond, name):  # pi0.5 AdaRMS: not in transformers
        scale, shift, gate = lin(cond, name).chunk(3, dim=-1)
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e.rms_norm_eps)
        return normed * (1 + scale) + shift, gate

    def time_cond(t):
        frac = torch.linspace(0, 1, e.hidden_size // 2, dtype=torch.float64)
        period = cfg.time_min_period * (cfg.time_max_period / cfg.time_min_period) ** frac
        ang = t * 2 * torch.pi / period
        emb = torch.cat([ang.sin(), ang.cos()]).float()
        h = torch.nn.functional.silu(lin(emb, "action.timestep_mlp.in"))
        return torch.nn.functional.silu(lin(h, "action.timestep_mlp.out"))

    x_t = _t(noise)
    horizon = len(noise)
    pos = (n_prefix + torch.arange(horizon))[None]
    for step in range(cfg.num_flow_steps):
        t = 1.0 - step / cfg.num_flow_steps
        cond = time_cond(t)
        x = lin(x_t, "action.action_in")[None]
        emb = rotary(x, pos)
        step_cache = copy.deepcopy(cache)  # each step attends to the prefix only, plus itself
        for i, (attn, mlp) in enumerate(layers):
            h, gate = ada(x, cond, f"action.blk.{i}.attn_norm")
            a, _ = attn(h, position_embeddings=emb, attention_mask=None, past_key_values=step_cache)
            x = x + gate * a
            h, gate = ada(x, cond, f"action.blk.{i}.ffn_norm")
            x = x + gate * mlp(h)
        h, _ = ada(x, cond, "action.output_norm")
        v = lin(h[0], "action.action_out")
        x_t = x_t + (-1.0 / cfg.num_flow_steps) * v
    return x_t.numpy()


def test_reference_agrees_with_transformers(setup):
    pack, w, ref = setup
    cfg = pack.config
    rng = np.random.default_rng()  # fresh inputs every run
    images = rng.uniform(-1, 1, size=(2, 224, 224, 3)).astype(np.float32)
    tokens = rng.integers(3, cfg.llm.vocab_size, size=23).astype(np.int32)
    tokens[0] = cfg.bos_token_id
    noise = rng.standard_normal((cfg.action_horizon, cfg.action_dim)).astype(np.float32)

    # Stage 1: vision tower + projector
    hf_vision = _hf_vision(cfg, w)
    pixel = _t(images.transpose(0, 3, 1, 2))
    hf_tokens = hf_vision(pixel_values=pixel).last_hidden_state @ _t(w("mm.0.weight")).T + _t(w("mm.0.bias"))
    ours = np.stack([ref.vision(img) for img in images])
    vision_err = rel_l2(ours, hf_tokens.numpy())
    print(f"vision rel-L2 {vision_err:.2e}")
    assert vision_err <= 1e-5

    # Stage 2: prefix through Gemma, K/V cache (keys after RoPE)
    prefix = np.concatenate(list(ours) + [ref.embed_text(tokens)]).astype(np.float32)
    cache = ref.prefix_cache(prefix)
    hf_cache = _hf_prefix_cache(cfg, w, prefix)
    keys_tol = 1e-5 + 3 * np.sqrt(2) * (len(prefix) - 1) * 2.0**-24  # transformers' float32 RoPE angles (above)
    for i in range(cfg.llm.num_layers):
        hf_k = hf_cache.layers[i].keys[0].permute(1, 0, 2).numpy()
        hf_v = hf_cache.layers[i].values[0].permute(1, 0, 2).numpy()
        assert rel_l2(cache.keys[i], hf_k) <= keys_tol, f"layer {i} keys"
        assert rel_l2(cache.values[i], hf_v) <= 1e-5, f"layer {i} values"

    # Stage 3: whole pipeline, flow matching with the expert
    inputs = Pi05Inputs(images=images, image_slots=("base_0_rgb", "left_wrist_0_rgb"), tokens=tokens,
                        noise=noise, num_steps=cfg.num_flow_steps)
    actions, _ = ref.sample_actions(inputs)
    hf_actions = _hf_actions(cfg, w, hf_cache, noise, len(prefix))
    err = rel_l2(actions, hf_actions)
    print(f"action chunk rel-L2 {err:.2e}")
    assert err <= 1e-4, f"action chunk rel-L2 {err:.2e}"
    # the integration actually moved the sample away from the noise
    assert rel_l2(actions, noise) > 1e-2
