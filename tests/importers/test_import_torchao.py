"""`pack import --from torchao-int8wo` on a Shallow-π style pruned int8 weight-only pi0.5 (tiny,
one of two layers kept). Tolerances: the int8 values are stored exactly (checked bit for bit);
the per-row scale becomes an F16 block scale (relative error <= 2^-11), so the imported pack acts
like the exact dequantised model within rel-L2 <= 1e-3 on the reference target."""

from __future__ import annotations

import numpy as np
from safetensors.torch import load_file

from checkpoint_layout import PALI
from import_checks import assert_refused, run_import
from torchao_layout import write_torchao
from vla_edge import load_policy
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack


def test_pruned_int8_import(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "src", llm=(0,), expert=(1,))
    r = run_import("torchao-int8wo", src, tmp_path / "pack")
    assert r.returncode == 0, r.stderr
    assert [f for f in verify_pack(tmp_path / "pack", golden_target="reference") if f.level == "error"] == []
    pack = Pack.open(tmp_path / "pack")
    assert pack.config.llm.num_layers == 1 and pack.config.expert.num_layers == 1  # from the file, not 18 / 2
    gguf = GGUFFile(pack.weights_path)
    assert gguf.tensor_infos()["pali.blk.0.attn_q.weight"].ggml_type == "Q8_0"
    assert gguf.tensor_infos()["embed.weight"].ggml_type == "F32"  # not a Linear: stays float
    # int8 values bit for bit: Q8_0 block = 2 bytes F16 scale + 32 int8
    raw, _ = gguf.raw("pali.blk.0.attn_q.weight")
    stored = np.asarray(raw).reshape(-1, 34)[:, 2:].view(np.int8).reshape(-1)
    source = load_file(str(src / "model.safetensors"))[PALI + "layers.0.self_attn.q_proj.weight:qdata"].numpy()
    assert np.array_equal(stored, source.reshape(-1))
    # against the exact dequantised model (q * scale in fp32) imported as a plain checkpoint
    exact = write_torchao(tiny_pack_dir, tmp_path / "exact", llm=(0,), expert=(1,), dequantised=True)
    assert run_import("checkpoint", exact, tmp_path / "exact_pack", "--no-golden").returncode == 0
    report = compare_policies(load_policy(tmp_path / "pack", target="reference"),
                              load_policy(tmp_path / "exact_pack", target="reference"), n_obs=2)
    assert 0 < report["rel_l2"]["max"] <= 1e-3


def test_stripped_scales_are_refused(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "src", strip_scales=True)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", ":scale", "stripped",
                    "re-export")


def test_pruned_layer_counts_must_agree(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "a", llm=(0, 1), expert=(0,))
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "disagree", "LLM has 2",
                    "expert 1")
    src = write_torchao(tiny_pack_dir, tmp_path / "b", llm=(1,), expert=(1,), renumber=False)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "[1]", "renumber")


def test_plain_checkpoint_is_not_int8(tiny_pack_dir, tmp_path):
    src = write_torchao(tiny_pack_dir, tmp_path / "src", dequantised=True)
    assert_refused(run_import("torchao-int8wo", src, tmp_path / "out"), tmp_path / "out", "no int8",
                   "--from checkpoint")
