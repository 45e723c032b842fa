"""Writes pi0.5 PyTorch checkpoints in the openpi and LeRobot layouts from a tiny pack's weights
(key names from shared/reference/actquant-pi05-gguf.md 2.2, written out independently of the
importer's own mapping): `model.safetensors` (LeRobot: every key under `model.`), config.json,
and statistics as openpi's assets/<id>/norm_stats.json or LeRobot's normalizer safetensors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.pack import Pack

VIS = "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
PALI = "paligemma_with_expert.paligemma.model.language_model."
EXP = "paligemma_with_expert.gemma_expert.model."
SIGLIP = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_out": "self_attn.out_proj", "ln1": "layer_norm1", "ln2": "layer_norm2", "ffn_up": "mlp.fc1",
          "ffn_down": "mlp.fc2"}
GEMMA = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_o": "self_attn.o_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
         "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
TOP = {"v.patch_embd": VIS + "embeddings.patch_embedding", "v.position_embd": VIS + "embeddings.position_embedding",
       "v.post_ln": VIS + "post_layernorm",
       "mm.0": "paligemma_with_expert.paligemma.model.multi_modal_projector.linear",
       "embed": "paligemma_with_expert.paligemma.lm_head", "action.action_in": "action_in_proj",
       "action.action_out": "action_out_proj", "action.timestep_mlp.in": "time_mlp_in",
       "action.timestep_mlp.out": "time_mlp_out", "action.output_norm": EXP + "norm.dense"}


def source_key(name: str) -> str:
    stem, _, kind = name.rpartition(".")
    if stem in TOP:
        return f"{TOP[stem]}.{kind}"
    parts = stem.split(".")
    if parts[0] == "v":
        return f"{VIS}encoder.layers.{parts[2]}.{SIGLIP[parts[3]]}.{kind}"
    if parts[0] == "pali":
        norm = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
        return f"{PALI}layers.{parts[2]}.{norm.get(parts[3]) or GEMMA[parts[3]]}.{kind}"
    norm = {"attn_norm": "input_layernorm.dense", "ffn_norm": "post_attention_layernorm.dense"}
    return f"{EXP}layers.{parts[2]}.{norm.get(parts[3]) or GEMMA[parts[3]]}.{kind}"


def checkpoint_tensors(pack_dir: Path) -> dict[str, np.ndarray]:
    """The pack's weights under their source keys, SigLIP MLP back at its real (unpadded) width,
    plus the tensors real checkpoints carry that pi0.5 inference does not use."""
    pack = Pack.open(pack_dir)
    real = pack.config.vision.intermediate_size
    gguf = GGUFFile(pack.weights_path)
    out = {}
    for name in gguf.tensor_infos():
        values = gguf.float32(name)
        if name.startswith("v.blk.") and ("ffn_up" in name):
            values = values[:real]
        elif name.startswith("v.blk.") and name.endswith("ffn_down.weight"):
            values = values[:, :real]
        out[source_key(name)] = np.ascontiguousarray(values)
    out[PALI + "norm.weight"] = np.zeros(pack.config.llm.hidden_size, np.float32)
    return out


def stack_depths(pack: Pack) -> dict[str, int]:
    """Released configs name the stacks by variant ("gemma_2b" / "gemma_300m"); a tiny model is
    neither, so the fixture states its depths the way a pruned export does."""
    return {"paligemma_depth": pack.config.llm.num_layers, "action_expert_depth": pack.config.expert.num_layers}


def write_checkpoint(pack_dir: Path, out: Path, layout: str = "openpi", dtype: torch.dtype = torch.float32,
                     edit=None, stats: str = "quantiles", config: dict | None = None) -> Path:
    """layout 'openpi' (plain keys, assets/<id>/norm_stats.json) or 'lerobot' (`model.` prefix,
    normalizer safetensors, config.json with type pi05). edit(key, array) -> array | None."""
    pack = Pack.open(pack_dir)
    tensors = checkpoint_tensors(pack_dir)
    if edit is not None:
        tensors = {k: v for k, v in ((k, edit(k, v)) for k, v in tensors.items()) if v is not None}
    prefix = "model." if layout == "lerobot" else ""
    out.mkdir(parents=True)
    save_file({prefix + k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in tensors.items()},
              str(out / "model.safetensors"))
    norm = json.loads((pack_dir / "norm_stats.json").read_text())["norm_stats"]
    fields = ("mean", "std", "q01", "q99") if stats == "quantiles" else ("mean", "std")
    if layout == "lerobot":
        flat = {f"{feat}.{f}": torch.tensor(norm[key][f], dtype=torch.float32)
                for key, feat in (("state", "observation.state"), ("actions", "action")) for f in fields}
        save_file(flat, str(out / "policy_preprocessor_step_5_normalizer_processor.safetensors"))
        cfg = {"type": "pi05", "chunk_size": pack.config.action_horizon, "n_action_steps": pack.config.action_horizon,
               "max_state_dim": pack.config.state_dim, "max_action_dim": pack.config.action_dim,
               "num_inference_steps": pack.config.num_flow_steps, "tokenizer_max_length": pack.config.max_token_len,
               **stack_depths(pack)}
    else:
        (out / "assets" / "ur3_demo").mkdir(parents=True)
        (out / "assets" / "ur3_demo" / "norm_stats.json").write_text(
            json.dumps({"norm_stats": {k: {f: norm[k][f] for f in fields} for k in ("state", "actions")}}))
        cfg = {"action_dim": pack.config.action_dim, "action_horizon": pack.config.action_horizon,
               "precision": "float32", **stack_depths(pack)}
    (out / "config.json").write_text(json.dumps({**cfg, **(config or {})}))
    shutil.copyfile(pack_dir / "tokenizer.model", out / "tokenizer.model")
    return out
