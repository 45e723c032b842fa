"""pi0.5 as three ONNX graphs, the split a TensorRT deployment uses:

  vision.onnx   images [N, S, S, 3] in [-1, 1]            -> image_tokens [N, P, D_llm]
  prefix.onnx   prefix [T, D_llm] (image tokens | scaled text embeddings), positions [T]
                                                            -> keys, values [L, T, KVH, d] (keys post-RoPE)
  expert.onnx   x_t [H, A], time_emb [D_exp], positions [H], keys, values
                                                            -> velocity [H, A]

The host keeps what is cheap and exact there: the embedding lookup (the 257k-row table stays out
of device memory), the sinusoidal time embedding, and the Euler loop over flow steps. Every
weight is the pack's tensor dequantised to float32 (the graphs are the fp32 oracle's
arithmetic) by default; `precision` fp16/bf16 writes the reduced-precision graphs a strongly
typed TensorRT engine is built from, weight matrices in the pack's own precision where ONNX has a
form for it (precision.py). Initializers are streamed to `<stage>.weights` as they are made, so
a full-size pack exports in the memory of its largest tensor, whatever the graph's size.
W4A4 packs are refused: their layers have no ONNX form yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from vla_edge.errors import PackError, TargetUnavailableError
from vla_edge.families.pi05.config import Pi05Config
from vla_edge.targets.reference.ops import rope_cos_sin

from .external import ExternalWeights
from .graph import FLOAT, INT64, GraphBuilder
from .precision import PRECISIONS, ExportPrecision, weight_label

Weights = Callable[[str], np.ndarray]


def vision_graph(cfg: Pi05Config, w: Weights, b: GraphBuilder) -> onnx.ModelProto:
    v, d_llm = cfg.vision, cfg.llm.hidden_size
    p, g = v.patch_size, v.image_size // v.patch_size
    x = b.input("images", FLOAT, ["n", v.image_size, v.image_size, 3])
    x = b.reshape(x, [-1, g, p, g, p, 3])
    x = b.reshape(b.transpose(x, [0, 1, 3, 5, 2, 4]), [-1, g * g, 3 * p * p])  # (gy, gx, c, ky, kx) like the conv
    x = b.linear(x, w("v.patch_embd.weight").reshape(v.hidden_size, -1), w("v.patch_embd.bias"), 3 * p * p, "v.patch_embd")
    x = b.add(x, b.tensor("v.position_embd", w("v.position_embd.weight")))
    hd = v.hidden_size // v.num_heads
    for i in range(v.num_layers):
        n = f"v.blk.{i}."
        h = b.layer_norm(x, w(n + "ln1.weight"), w(n + "ln1.bias"), v.layer_norm_eps, n + "ln1")
        q, k, val = (b.reshape(b.linear(h, w(n + f"attn_{t}.weight"), w(n + f"attn_{t}.bias"), v.hidden_size, n + f"attn_{t}"),
                               [0, 0, v.num_heads, hd]) for t in ("q", "k", "v"))
        att = b.attention(q, k, val, v.num_heads, v.num_heads, hd)
        x = b.add(x, b.linear(att, w(n + "attn_out.weight"), w(n + "attn_out.bias"), v.hidden_size, n + "attn_out"))
        h = b.layer_norm(x, w(n + "ln2.weight"), w(n + "ln2.bias"), v.layer_norm_eps, n + "ln2")
        up = w(n + "ffn_up.weight")
        h = b.gelu_tanh(b.linear(h, up, w(n + "ffn_up.bias"), v.hidden_size, n + "ffn_up"))
        x = b.add(x, b.linear(h, w(n + "ffn_down.weight"), w(n + "ffn_down.bias"), up.shape[0], n + "ffn_down"))
    x = b.layer_norm(x, w("v.post_ln.weight"), w("v.post_ln.bias"), v.layer_norm_eps, "v.post_ln")
    x = b.linear(x, w("mm.0.weight"), w("mm.0.bias"), v.hidden_size, "mm.0")
    b.output(x, "image_tokens", FLOAT, ["n", g * g, d_llm])
    return b.model()


def _rope_inputs(b: GraphBuilder, positions: str, cfg: Pi05Config, max_positions: int) -> tuple[str, str]:
    cos, sin = rope_cos_sin(np.arange(max_positions), cfg.llm.head_dim, cfg.llm.rope_theta)

    def gathered(table: np.ndarray, name: str) -> str:  # [T, 1, d], broadcast over heads
        rows = b.op("Gather", [b.tensor(name, table), positions], name, axis=0)
        return b.op("Unsqueeze", [rows, b.const([1], np.int64)], name)

    return gathered(cos, "rope_cos"), gathered(sin, "rope_sin")


def prefix_graph(cfg: Pi05Config, w: Weights, b: GraphBuilder, max_positions: int) -> onnx.ModelProto:
    m = cfg.llm
    x = b.op("Unsqueeze", [b.input("prefix", FLOAT, ["t", m.hidden_size]), b.const([0], np.int64)], "batch")
    cos, sin = _rope_inputs(b, b.input("positions", INT64, ["t"]), cfg, max_positions)
    keys, values = [], []
    for i in range(m.num_layers):
        n = f"pali.blk.{i}."
        h = b.gemma_rms_norm(x, w(n + "attn_norm.weight"), m.rms_norm_eps, n + "attn_norm")
        q = b.rope(b.reshape(b.linear(h, w(n + "attn_q.weight"), None, m.hidden_size, n + "attn_q"),
                             [0, 0, m.num_heads, m.head_dim]), cos, sin, m.head_dim)
        k = b.rope(b.reshape(b.linear(h, w(n + "attn_k.weight"), None, m.hidden_size, n + "attn_k"),
                             [0, 0, m.num_kv_heads, m.head_dim]), cos, sin, m.head_dim)
        val = b.reshape(b.linear(h, w(n + "attn_v.weight"), None, m.hidden_size, n + "attn_v"),
                        [0, 0, m.num_kv_heads, m.head_dim])
        keys.append(k)
        values.append(val)
        att = b.attention(q, k, val, m.num_heads, m.num_kv_heads, m.head_dim)
        x = b.add(x, b.linear(att, w(n + "attn_o.weight"), None, m.num_heads * m.head_dim, n + "attn_o"))
        if i == m.num_layers - 1:
            break  # the last layer's MLP output is never read: only K/V leave the prefix
        h = b.gemma_rms_norm(x, w(n + "ffn_norm.weight"), m.rms_norm_eps, n + "ffn_norm")
        gated = b.mul(b.gelu_tanh(b.linear(h, w(n + "ffn_gate.weight"), None, m.hidden_size, n + "ffn_gate")),
                      b.linear(h, w(n + "ffn_up.weight"), None, m.hidden_size, n + "ffn_up"))
        x = b.add(x, b.linear(gated, w(n + "ffn_down.weight"), None, m.intermediate_size, n + "ffn_down"))
    shape = ["layers", "t", m.num_kv_heads, m.head_dim]
    b.output(b.op("Concat", keys, "keys", axis=0), "keys", FLOAT, shape)
    b.output(b.op("Concat", values, "values", axis=0), "values", FLOAT, shape)
    return b.model()


def expert_graph(cfg: Pi05Config, w: Weights, b: GraphBuilder, max_positions: int) -> onnx.ModelProto:
    e, m = cfg.expert, cfg.llm
    x_t = b.input("x_t", FLOAT, [cfg.action_horizon, cfg.action_dim])
    emb = b.input("time_emb", FLOAT, [e.hidden_size])
    cos, sin = _rope_inputs(b, b.input("positions", INT64, [cfg.action_horizon]), cfg, max_positions)
    past_k = b.input("keys", FLOAT, [m.num_layers, "t", e.num_kv_heads, e.head_dim])
    past_v = b.input("values", FLOAT, [m.num_layers, "t", e.num_kv_heads, e.head_dim])

    def lin(x: str, name: str, in_dim: int, bias: bool = False) -> str:
        return b.linear(x, w(name + ".weight"), w(name + ".bias") if bias else None, in_dim, name)

    cond = b.silu(lin(emb, "action.timestep_mlp.in", e.hidden_size, True))
    cond = b.silu(lin(cond, "action.timestep_mlp.out", e.hidden_size, True))

    def ada(x: str, name: str) -> tuple[str, str]:
        scale, shift, gate = b.split_last(lin(cond, name, e.hidden_size, True), [e.hidden_size] * 3)
        return b.add(b.mul(b.rms_normalize(x, e.rms_norm_eps), b.add(b.const(1.0), scale)), shift), gate

    x = b.op("Unsqueeze", [lin(x_t, "action.action_in", cfg.action_dim, True), b.const([0], np.int64)], "batch")
    for i in range(e.num_layers):
        n = f"action.blk.{i}."
        h, gate = ada(x, n + "attn_norm")
        q = b.rope(b.reshape(lin(h, n + "attn_q", e.hidden_size), [0, 0, e.num_heads, e.head_dim]), cos, sin, e.head_dim)
        k = b.rope(b.reshape(lin(h, n + "attn_k", e.hidden_size), [0, 0, e.num_kv_heads, e.head_dim]), cos, sin, e.head_dim)
        val = b.reshape(lin(h, n + "attn_v", e.hidden_size), [0, 0, e.num_kv_heads, e.head_dim])
        layer = b.const(i, np.int64)
        cached = [b.op("Unsqueeze", [b.op("Gather", [past, layer], "layer", axis=0), b.const([0], np.int64)], "past")
                  for past in (past_k, past_v)]
        keys = b.op("Concat", [cached[0], k], "keys", axis=1)
        values = b.op("Concat", [cached[1], val], "values", axis=1)
        att = b.attention(q, keys, values, e.num_heads, e.num_kv_heads, e.head_dim)
        x = b.add(x, b.mul(gate, lin(att, n + "attn_output", e.num_heads * e.head_dim)))
        h, gate = ada(x, n + "ffn_norm")
        gated = b.mul(b.gelu_tanh(lin(h, n + "ffn_gate", e.hidden_size)), lin(h, n + "ffn_up", e.hidden_size))
        x = b.add(x, b.mul(gate, lin(gated, n + "ffn_down", e.intermediate_size)))
    h, _ = ada(x, "action.output_norm")
    out = b.reshape(lin(h, "action.action_out", e.hidden_size, True), [cfg.action_horizon, cfg.action_dim])
    b.output(out, "velocity", FLOAT, [cfg.action_horizon, cfg.action_dim])
    return b.model()


def max_positions(cfg: Pi05Config, max_images: int) -> int:
    return max_images * cfg.vision.num_patches + cfg.max_token_len + cfg.action_horizon


STAGES = {"vision": "pi05_vision", "prefix": "pi05_prefix", "expert": "pi05_expert_step"}


def export_pi05(pack, out_dir: Path, max_images: int | None = None, precision: ExportPrecision = PRECISIONS["fp32"],
                act_scales: dict[str, float] | None = None) -> dict:
    """Write vision/prefix/expert .onnx files (+ `<stage>.weights` external data) and
    onnx_export.json describing them; returns that description. act_scales (weight name -> INT8
    activation scale, from `calibration_act_scales`): those matmuls become W8A8 Q/DQ."""
    if pack.manifest.family != "pi05":
        raise TargetUnavailableError(f"ONNX export has no graphs for family '{pack.manifest.family}'")
    if pack.manifest.quantization.w4a4 is not None:
        raise PackError("pack.yaml quantization.w4a4", "W4A4 layers have no ONNX form yet; export an fp or GGUF-quantised pack")
    cfg: Pi05Config = pack.config
    images = max_images or len(pack.manifest.cameras)
    positions = max_positions(cfg, images)
    w = pack.weights.float32
    infos = pack.weights.tensor_infos()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, forms = {}, {}
    for stage, graph_name in STAGES.items():
        external = ExternalWeights(out_dir / f"{stage}.weights")
        try:
            b = GraphBuilder(graph_name, external, precision, weight_types=lambda name: infos[name].ggml_type,
                             act_scales=act_scales)
            if stage == "vision":
                model = vision_graph(cfg, w, b)
            else:
                model = (prefix_graph if stage == "prefix" else expert_graph)(cfg, w, b, positions)
        finally:
            external.close()
        path = out_dir / f"{stage}.onnx"
        onnx.save_model(model, str(path))  # initializers already point into <stage>.weights
        onnx.checker.check_model(str(path))
        files[stage] = path.name
        forms[stage] = dict(b.weight_forms)
        del model, b
    all_forms = {k: sum(f.get(k, 0) for f in forms.values()) for k in ("float", "int8", "int4", "w8a8")}
    shapes = {"image_size": cfg.vision.image_size, "patches_per_image": cfg.vision.num_patches, "llm_hidden": cfg.llm.hidden_size,
              "max_prompt_tokens": cfg.max_token_len, "layers": cfg.llm.num_layers, "kv_heads": cfg.llm.num_kv_heads,
              "head_dim": cfg.llm.head_dim, "horizon": cfg.action_horizon, "action_dim": cfg.action_dim,
              "expert_hidden": cfg.expert.hidden_size}
    description = {"family": "pi05", "pack": pack.manifest.name, "opset": precision.opset, "max_positions": positions,
                   "max_images": images, "shapes": shapes, "files": files,
                   "precision": precision.name + ("" if precision.is_reference else weight_label(all_forms))
                   + ("-w8a8" if all_forms["w8a8"] else ""),
                   "weight_forms": forms,
                   "weights_sha256": pack.manifest.files.weights.sha256}
    (out_dir / "onnx_export.json").write_text(json.dumps(description, indent=1) + "\n")
    return description
