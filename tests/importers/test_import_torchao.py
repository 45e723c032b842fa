"""`pack import --from torchao-int8wo` on a Shallow-π style pruned int8 weight-only pi0.5 (tiny,
one of two layers kept) written by torchao 0.18 itself (quantize_ + flatten_tensor_state_dict).

Tolerances: the int8 values are stored exactly (checked bit for bit); a per-row / per-tensor /
per-32-group scale becomes an F16 block scale (relative error <= 2^-11), so the imported pack acts
like torchao's own dequantised model (imported as a plain fp32 checkpoint) within rel-L2 <= 1e-3 on
the reference target. Groups of 16 cannot be Q8_0 and are kept dequantised in F16 (relative
rounding 2^-11 per weight): same bound."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from checkpoint_layout import PALI
from import_checks import assert_refused, run_import
from torchao_layout import drop_metadata, retype_one, strip_scales, write_torchao
from vla_edge import load_policy
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack

Q_PROJ = PALI + "layers.0.self_attn.q_proj"


def _acts_like_torchao_dequantised(tiny_pack_dir, tmp_path, kind: str) -> None:
    exact = write_torchao(tiny_pack_dir, tmp_path / "exact", llm=(0,), expert=(1,), kind=kind, dequantised=True)
    assert run_import("checkpoint", exact, tmp_path / "exact_pack", "--no-golden").returncode == 0
    report = compare_policies(load_policy(tmp_path / "pack", target="reference"),
                              load_policy(tmp_path / "exact_pack", target="reference"), n_obs=2)
    assert 0 < report["rel_l2"]["max"] <= 1e-3


@pytest.mark.parametrize("kind", ["row", "group32"])
def test_pruned_int8_import_keeps_every_int8_value(tiny_pack_dir, tmp_path, kind):
    src = write_torchao(tiny_pack_dir, tmp_path / "src", llm=(0,), expert=(1,), kind=kind)
    r = run_import("torchao-int8wo", src, tmp_path / "pack")
    assert r.returncode == 0, r.stderr
    assert [f for f in verify_pack(tmp_path / "pack", golden_target="reference") if f.level == "error"] == []
    pack = Pack.open(tmp_path / "pack")
    assert pack.config.llm.num_layers == 1 and pack.config.expert.num_layers == 1  # from the file, not 18 / 2
    assert pack.manifest.quantization.exceptions == {}  # every int8 weight fits Q8_0 exactly
    gguf = GGUFFile(pack.weights_path)
    assert gguf.tensor_infos()["pali.blk.0.attn_q.weight"].ggml_type == "Q8_0"
    assert gguf.tensor_infos()["embed.weight"].ggml_type == "F32"  # not a Linear: stays float
    # Q8_0 block = 2 bytes F16 scale + 32 int8: the int8 values bit for bit, the scales to F16
    raw, _ = gguf.raw("pali.blk.0.attn_q.weight")
    blocks = np.asarray(raw).reshape(-1, 34)
    with safe_open(str(src / "model.safetensors"), framework="pt") as f:
        qdata = f.get_tensor(Q_PROJ + "._weight_qdata").numpy()
        scale = f.get_tensor(Q_PROJ + "._weight_scale").float().numpy()
    assert np.array_equal(blocks[:, 2:].view(np.int8).reshape(-1), qdata.reshape(-1))
    per_block = np.repeat(scale, qdata.shape[1] // 32 // scale.shape[1], axis=1).reshape(-1)
    np.testing.assert_allclose(blocks[:, :2].copy().view(np.float16).reshape(-1), per_block, rtol=2 ** -11)
    assert pack.manifest.source["int8_granularity"] == (["per_row"] if kind == "row" else ["block 1x32", "per_row"])
    _acts_like_torchao_dequantised(tiny_pack_dir, tmp_path, kind)


def test_groups_that_split_q8_blocks_stay_dequantised(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "src", llm=(0,), expert=(1,), kind="group16")
    assert run_import("torchao-int8wo", src, tmp_path / "pack").returncode == 0
    pack = Pack.open(tmp_path / "pack")
    assert GGUFFile(pack.weights_path).tensor_infos()["pali.blk.0.attn_q.weight"].ggml_type == "F16"
    assert "split a 32-value block" in pack.manifest.quantization.exceptions["pali.blk.0.attn_q.weight"]
    _acts_like_torchao_dequantised(tiny_pack_dir, tmp_path, "group16")


def test_stripped_scales_are_refused(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "a", edit=strip_scales)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "_weight_scale",
                   "stripped", "flatten_tensor_state_dict")
    src = write_torchao(tiny_pack_dir, tmp_path / "b", edit=drop_metadata)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", ".weight'", "int8",
                   "tensor_names", "stripped")


def test_other_torchao_schemes_are_refused(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "a", dynamic_act=True)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "dynamic activation",
                   "Int8WeightOnlyConfig")
    src = write_torchao(tiny_pack_dir, tmp_path / "b", edit=retype_one)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "'Float8Tensor'",
                   "Int8Tensor")


def test_damaged_metadata_names_the_entry(tiny_pack_dir, tmp_path):
    def bad_block(tensors, metadata):
        record = json.loads(metadata[Q_PROJ + ".weight"])
        record["_data"]["block_size"] = [1, 7]
        metadata[Q_PROJ + ".weight"] = json.dumps(record)

    src = write_torchao(tiny_pack_dir, tmp_path / "a", edit=bad_block)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", Q_PROJ + ".weight",
                   "block_size [1, 7]")

    def extra(tensors, metadata):
        tensors["stray.tensor"] = next(iter(tensors.values())).clone()

    src = write_torchao(tiny_pack_dir, tmp_path / "b", edit=extra)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "stray.tensor",
                   "not described")

    def nan_scale(tensors, metadata):
        scale = tensors[Q_PROJ + "._weight_scale"]
        scale.view(-1)[np.random.default_rng().integers(scale.numel())] = float("nan")

    src = write_torchao(tiny_pack_dir, tmp_path / "c", edit=nan_scale)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", Q_PROJ + "._weight_scale",
                   "inf/nan")


def test_pruned_layer_counts_must_agree(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "a", llm=(0, 1), expert=(0,))
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "disagree", "LLM has 2",
                   "expert 1")
    src = write_torchao(tiny_pack_dir, tmp_path / "b", llm=(1,), expert=(1,), renumber=False)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "[1]", "renumber")


def test_pruned_file_with_a_stale_config_is_refused(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "a", config={"paligemma_depth": 2, "action_expert_depth": 2})
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "config.json: paligemma_depth",
                   "2 LLM layers", "holds 1", '"paligemma_depth": 1')
    src = write_torchao(tiny_pack_dir, tmp_path / "b", config={"paligemma_variant": "gemma_2b"})
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "paligemma_variant",
                   "width 2048", "another model")


def test_plain_checkpoint_is_not_int8(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "src", dequantised=True)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "no int8",
                   "--from checkpoint")


def test_x86_runs_the_int8_pack(tiny_pack_dir, tmp_path):
    """The x86 target (ggml Q8_0 kernels, activations quantised to 8 bits per 32 on the fly) against
    the reference target's dequantise-then-fp32 on the same pack: rel-L2 <= 1e-2."""
    pytest.importorskip("vla_edge._native")
    src = write_torchao(tiny_pack_dir, tmp_path / "src", llm=(0,), expert=(1,))
    assert run_import("torchao-int8wo", src, tmp_path / "pack", "--no-golden").returncode == 0
    report = compare_policies(load_policy(tmp_path / "pack", target="x86", threads=2),
                              load_policy(tmp_path / "pack", target="reference"), n_obs=2)
    assert 0 < report["rel_l2"]["max"] <= 1e-2, report
