"""Writes ActQuant exports in their released layouts, at toy size.

pi0.5 (`write_release`, facts from shared/reference/actquant-pi05-gguf.md): `pi05.gguf` with the
exporter's metadata (no pi05.llm.* keys, quant strings, actual_*_dim), a K-quant mix (or, with
kquant=False, the tiny pack's own F32 tensors and quant strings 'none', as the exporter writes
without --quant_* flags — that form needs no native module), F32 `norm.*` stat tensors,
`tokenizer.model`, and `norm_stats.json` with the flat keys ActQuant's server reads.

OpenVLA-OFT (`write_openvla_oft_export`): see its docstring for where the layout comes from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from vla_edge.families.pi05.metadata import ARCH, config_to_metadata
from vla_edge.packs.gguf_io import GGUFFile, PlannedTensor, write_gguf
from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import quantize_pack

STAT_FIELDS = ("mean", "std", "q01", "q99")


KQUANT_STRINGS = {"pi05.quant_llm": "q3k", "pi05.quant_vision": "q4k", "pi05.quant_embedding": "q8"}


def released_metadata(pack: Pack, kquant: bool = True) -> dict:
    meta = {k: v for k, v in config_to_metadata(pack.config).items()
            if not k.startswith("pi05.llm.") and k != "pi05.variant"}
    n = len(pack.manifest.action_space.names)
    meta.update({k: v if kquant else "none" for k, v in KQUANT_STRINGS.items()})
    meta.update({"pi05_action.actual_action_dim": n, "pi05_action.actual_state_dim": n})
    return meta


def write_release(tiny_pack: Path, out: Path, work: Path, norm_json: str = "flat",
                  norm_tensors: bool = True, edit=None, kquant: bool = True) -> Path:
    """edit(name, array) -> array lets a test damage one tensor (wrong shape, ...). kquant=True
    quantises with ggml's quantisers (needs vla_edge._native) into work/q, the pack the release
    is written from; kquant=False writes the tiny pack's tensors as they are."""
    source = quantize_pack(tiny_pack, "actquant-3.97", work / "q", golden=False) if kquant else tiny_pack
    pack = Pack.open(source)
    weights = GGUFFile(pack.weights_path)
    stats = json.loads((source / "norm_stats.json").read_text())["norm_stats"]
    tensors = []
    for name, info in weights.tensor_infos().items():
        data, _ = weights.raw(name)
        data = np.asarray(data)
        shape = info.shape
        if edit is not None:
            new = edit(name, weights.float32(name))
            if new is None:
                continue
            if new.shape != shape:
                data, shape = new.astype(np.float32), new.shape
                tensors.append(PlannedTensor(name, shape, "F32", lambda d=data: d))
                continue
        tensors.append(PlannedTensor(name, shape, info.ggml_type, lambda d=data: d))
    if norm_tensors:
        for key, prefix in (("state", "state"), ("actions", "action")):
            for f in STAT_FIELDS:
                values = np.asarray(stats[key][f], np.float32)
                tensors.append(PlannedTensor(f"norm.{prefix}_{f}", values.shape, "F32", lambda v=values: v))
    out.mkdir(parents=True)
    write_gguf(out / "pi05.gguf", ARCH, released_metadata(pack, kquant), tensors)
    shutil.copyfile(source / "tokenizer.model", out / "tokenizer.model")
    if norm_json == "flat":
        flat = {f"{p}_{f}": stats[k][f] for k, p in (("state", "state"), ("actions", "action")) for f in STAT_FIELDS}
        (out / "norm_stats.json").write_text(json.dumps(flat))
    elif norm_json == "openpi":
        (out / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}))
    return out


# --- ActQuant OpenVLA-OFT -----------------------------------------------------------------------
_CLIP = {"clip.projector_type": "openvla", "clip.has_vision_encoder": True, "clip.use_gelu": True,
         "clip.vision.embedding_length": 16, "clip.vision.attention.head_count": 2,
         "clip.vision.feed_forward_length": 32, "clip.vision.block_count": 1, "clip.vision.projection_dim": 40,
         "clip.vision.attention.layer_norm_epsilon": 1e-6, "clip.vision.image_size": 224,
         "clip.vision.patch_size": 14, "clip.vision.feature_layer": [0]}
_VIT_BLOCK = (("v.blk.0.attn_q.weight", (16, 16)), ("v.blk.0.attn_k.weight", (16, 16)),
              ("v.blk.0.attn_v.weight", (16, 16)), ("v.blk.0.attn_out.weight", (16, 16)),
              ("v.blk.0.ln1.weight", (16,)), ("v.blk.0.ffn_up.weight", (32, 16)), ("v.blk.0.ffn_down.weight", (16, 32)))
# component -> (general.architecture, metadata, [(tensor name, numpy shape)])
OFT_COMPONENTS: dict[str, tuple[str, dict, tuple[tuple[str, tuple[int, ...]], ...]]] = {
    "dinov2": ("dinov2", _CLIP, (("v.class_embd", (16,)), ("v.reg_embd", (4, 16)),
                                 ("v.patch_embd.weight", (16, 3, 14, 14)), ("v.position_embd.weight", (257, 16)),
                                 ("v.blk.0.ls1.weight", (16,)), ("v.blk.0.ls2.weight", (16,))) + _VIT_BLOCK),
    "siglip": ("siglip", {**_CLIP, "clip.vision.image_mean": [0.5, 0.5, 0.5]},
               (("v.patch_embd.weight", (16, 3, 14, 14)), ("v.position_embd.weight", (256, 16))) + _VIT_BLOCK),
    "proj": ("proj", {}, (("fc1.weight", (64, 32)), ("fc1.bias", (64,)), ("fc2.weight", (24, 64)),
                          ("fc2.bias", (24,)), ("fc3.weight", (24, 24)), ("fc3.bias", (24,)))),
    "action_head": ("openvla_oft_action_head",
                    {"action_dim": 7, "num_actions_chunk": 8, "num_blocks": 2, "input_dim": 24, "hidden_dim": 24},
                    (("model.layer_norm1.weight", (168,)), ("model.fc1.weight", (24, 168)))
                    + tuple((f"model.mlp_resnet_blocks.{i}.ffn.{j}.weight", shape)
                            for i in range(2) for j, shape in ((0, (24,)), (1, (24, 24))))
                    + (("model.layer_norm2.weight", (24,)), ("model.fc2.weight", (7, 24)))),
    "proprio_projector": ("openvla_proprio_projector", {"proprio_dim": 8, "llm_dim": 24},
                          (("fc1.weight", (24, 8)), ("fc1.bias", (24,)), ("fc2.weight", (24, 24)),
                           ("fc2.bias", (24,)))),
    "llm": ("llama", {"llama.block_count": 1, "llama.embedding_length": 24, "llama.context_length": 64},
            (("token_embd.weight", (96, 24)), ("blk.0.attn_q.weight", (24, 24)), ("output_norm.weight", (24,)),
             ("output.weight", (96, 24)))),
}
# file name -> component, as export_openvla_oft.py + `convert_hf_to_gguf.py ... --outfile llm_bf16.gguf` leave them
OFT_RELEASE = {"dinov2.gguf": "dinov2", "siglip.gguf": "siglip", "proj.gguf": "proj",
               "action_head.gguf": "action_head", "proprio_projector.gguf": "proprio_projector",
               "llm_bf16.gguf": "llm"}
# what tools/quantize-vision and llama-quantize add next to it (speed_test.py's presets)
OFT_QUANTIZED = {"dinov2_q4_k_m.gguf": "dinov2", "siglip_q4_k_m_padded.gguf": "siglip",
                 "llm_q4_k_m.gguf": "llm", "proj.gguf": "proj"}


def write_openvla_oft_export(out: Path, files: dict[str, str] = OFT_RELEASE,
                             arch: dict[str, str] | None = None) -> Path:
    """An ActQuant OpenVLA-OFT export directory at toy size (random F32 weights).

    Layout from github.com/arashakb/ActQuant @ e1da4942 (read, not copied):
    tools/openvla-oft/export_openvla_oft.py writes dinov2.gguf, siglip.gguf, proj.gguf (gguf-py
    GGUFWriter with arch = the file's stem, so general.architecture 'dinov2' / 'siglip' / 'proj';
    the vision files carry clip.vision.* keys and clip.projector_type 'openvla'), action_head.gguf
    (architecture 'openvla_oft_action_head', un-prefixed keys action_dim, num_actions_chunk=8,
    num_blocks, input_dim, hidden_dim; tensors model.layer_norm1/fc1/mlp_resnet_blocks.N.ffn.{0,1}/
    layer_norm2/fc2), proprio_projector.gguf ('openvla_proprio_projector', keys proprio_dim,
    llm_dim; tensors fc1/fc2) and a language_model/ folder that llama.cpp's convert_hf_to_gguf.py
    turns into llm_bf16.gguf (architecture 'llama'). DINOv2 tensors include v.class_embd,
    v.reg_embd and v.blk.N.ls1/ls2; names are from the exporter's mapping tables. File names of
    the quantised variants (dinov2_q4_k_m.gguf, siglip_q4_k_m_padded.gguf, llm_q4_k_m.gguf) and
    dataset_statistics.json / language_model/tokenizer.json come from tools/openvla-oft/speed_test.py;
    tools/quantize-vision/quantize-vision.cpp copies every key of its input, so the quantised
    vision files keep their architecture and projector type. Not confirmed from the sources:
    the exact general.* keys convert_hf_to_gguf writes for the LLM (only 'llama' and a few
    llama.* keys are written here) and the quantised tensor types (all F32 here: detection reads
    names and metadata only), and the contents of dataset_statistics.json (OpenVLA's usual
    per-dataset action/proprio statistics are written). Shapes are toy-sized.

    files: file name -> component of OFT_COMPONENTS; arch: component -> architecture override
    (to show that tensor names alone are evidence)."""
    rng = np.random.default_rng()
    out.mkdir(parents=True)
    for file_name, component in files.items():
        default_arch, meta, shapes = OFT_COMPONENTS[component]
        planned = [PlannedTensor(name, shape, "F32",
                                 lambda s=shape: rng.standard_normal(s).astype(np.float32))
                   for name, shape in shapes]
        write_gguf(out / file_name, (arch or {}).get(component, default_arch), meta, planned)
    (out / "language_model").mkdir()
    (out / "language_model" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                                      "model_type": "llama"}))
    (out / "language_model" / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    stats = {"mean": [0.0] * 7, "std": [1.0] * 7, "q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}
    (out / "dataset_statistics.json").write_text(json.dumps(
        {"libero_spatial_no_noops": {"action": stats, "proprio": {k: [0.0] * 8 for k in ("mean", "std", "q01", "q99")},
                                     "num_transitions": 1, "num_trajectories": 1}}))
    return out
