"""`pack import --from checkpoint` on openpi / LeRobot pi0.5 safetensors checkpoints written from
the tiny pack's weights. Tolerances: an fp32 checkpoint imported as F32 holds the very same
numbers, so it acts like the tiny pack to float32 round-off (rel-L2 <= 1e-6); a bf16 checkpoint
imported as F16 is compared with the same bf16 weights run at fp32 (bf16 -> F16 is exact for
values in F16's normal range, so again rel-L2 <= 1e-5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from checkpoint_layout import PALI, VIS, write_checkpoint
from cli_runner import run_cli
from import_checks import assert_refused, run_import
from vla_edge import load_policy
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack


def _import(src, out, *extra):
    return run_import("checkpoint", src, out, *extra)


@pytest.fixture(scope="module")
def openpi_import(tiny_pack_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("ckpt")
    src = write_checkpoint(tiny_pack_dir, work / "openpi")
    r = _import(src, work / "pack")
    assert r.returncode == 0, r.stderr
    return work / "pack"


def test_openpi_fp32_checkpoint_imports_as_the_same_model(openpi_import, tiny_pack_dir):
    assert [f for f in verify_pack(openpi_import, golden_target="reference") if f.level == "error"] == []
    pack, parent = Pack.open(openpi_import), Pack.open(tiny_pack_dir)
    skip = {"variant", "max_token_len"}  # openpi's config.json has no prompt length: pi0.5's 200 is used
    assert pack.config.model_dump(exclude=skip) == parent.config.model_dump(exclude=skip)
    assert pack.manifest.quantization.recipe == "f32"
    assert set(GGUFFile(pack.weights_path).tensor_infos()) == set(GGUFFile(parent.weights_path).tensor_infos())
    report = compare_policies(load_policy(openpi_import, target="reference"),
                              load_policy(tiny_pack_dir, target="reference"), n_obs=2)
    assert report["rel_l2"]["max"] <= 1e-6


def test_lerobot_bf16_checkpoint_imports_as_f16(tiny_pack_dir, tmp_path):
    src = write_checkpoint(tiny_pack_dir, tmp_path / "lerobot", layout="lerobot", dtype=torch.bfloat16)
    r = _import(src, tmp_path / "pack", "--no-golden")
    assert r.returncode == 0, r.stderr
    pack = Pack.open(tmp_path / "pack")
    assert pack.manifest.quantization.recipe == "f16"
    assert pack.config.max_token_len == 64 and pack.config.num_flow_steps == 10  # from config.json
    infos = GGUFFile(pack.weights_path).tensor_infos()
    assert infos["pali.blk.0.attn_q.weight"].ggml_type == "F16" and infos["v.blk.0.ln1.weight"].ggml_type == "F32"
    # the same bf16-rounded weights at fp32: the importer may only add F16 storage (exact for bf16 values)
    exact = write_checkpoint(tiny_pack_dir, tmp_path / "rounded", edit=lambda k, v: torch.from_numpy(v).to(
        torch.bfloat16).float().numpy())
    assert _import(exact, tmp_path / "rounded_pack", "--no-golden").returncode == 0
    report = compare_policies(load_policy(tmp_path / "pack", target="reference"),
                              load_policy(tmp_path / "rounded_pack", target="reference"), n_obs=1)
    assert report["rel_l2"]["max"] <= 1e-5
    stats = json.loads((tmp_path / "pack" / "norm_stats.json").read_text())["norm_stats"]
    parent = json.loads((tiny_pack_dir / "norm_stats.json").read_text())["norm_stats"]
    assert np.allclose(stats["actions"]["q99"], parent["actions"]["q99"], rtol=1e-6)


def test_untied_lerobot_embedding_comes_from_embed_tokens(tiny_pack_dir, tmp_path):
    """LeRobot 0.6.1 (transformers 5) saves `embed_tokens` and `lm_head` untied; its forward embeds
    with `embed_tokens` only. Taking `lm_head` (openpi's tied copy) put the wrong matrix into the
    prefix: 1.2% chunk error against LeRobot (issue 15, tests/oracle)."""
    from safetensors.torch import load_file, save_file

    src = write_checkpoint(tiny_pack_dir, tmp_path / "lerobot", layout="lerobot")
    tensors = load_file(str(src / "model.safetensors"))
    lm_head = tensors["model.paligemma_with_expert.paligemma.lm_head.weight"]
    trained = lm_head + 0.05 * torch.randn(lm_head.shape)  # fine-tuning moved the embedding only
    tensors[f"model.{PALI}embed_tokens.weight"] = trained
    save_file(tensors, str(src / "model.safetensors"))
    assert _import(src, tmp_path / "pack", "--no-golden").returncode == 0
    pack = Pack.open(tmp_path / "pack")
    np.testing.assert_array_equal(GGUFFile(pack.weights_path).float32("embed.weight"), trained.numpy())
    assert pack.manifest.source["text_embedding"] == f"model.{PALI}embed_tokens.weight"


def test_missing_tokenizer_and_stats(tiny_pack_dir, tmp_path):
    src = write_checkpoint(tiny_pack_dir, tmp_path / "src")
    (src / "tokenizer.model").unlink()
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "tokenizer.model", "--tokenizer")
    r = _import(src, tmp_path / "out", "--tokenizer", str(tiny_pack_dir / "tokenizer.model"), "--no-golden")
    assert r.returncode == 0, r.stderr
    src = write_checkpoint(tiny_pack_dir, tmp_path / "nostats", layout="lerobot", stats="meanstd")
    assert_refused(_import(src, tmp_path / "out2"), tmp_path / "out2", "q01", "quantiles")


def test_missing_and_wrong_shape_tensors(tiny_pack_dir, tmp_path):
    key = PALI + "layers.1.self_attn.k_proj.weight"
    src = write_checkpoint(tiny_pack_dir, tmp_path / "a", edit=lambda k, v: None if k == key else v)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "pali.blk.1.attn_k.weight", "missing")
    fc1 = VIS + "encoder.layers.0.mlp.fc2.weight"
    src = write_checkpoint(tiny_pack_dir, tmp_path / "b", edit=lambda k, v: v[:, :-3] if k == fc1 else v)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "v.blk.0.ffn_down.weight", "shape")


def test_other_family_and_unknown_tensors(tiny_pack_dir, tmp_path):
    rng = np.random.default_rng()
    src = write_checkpoint(tiny_pack_dir, tmp_path / "pi0", edit=lambda k, v: v)
    # a pi0 checkpoint carries a continuous state projection
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(src / "model.safetensors"))
    tensors["state_proj.weight"] = torch.from_numpy(rng.standard_normal((128, 32)).astype(np.float32))
    save_file(tensors, str(src / "model.safetensors"))
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "state_proj", "pi0")
    src = write_checkpoint(tiny_pack_dir, tmp_path / "lr", layout="lerobot", config={"type": "act"})
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "config.json", "pi05")


def test_config_json_that_disagrees_with_the_tensors(tiny_pack_dir, tmp_path):
    """Released configs name the stacks by openpi variant; a variant or stated depth that does not
    match the tensors means mixed-up files and is refused, naming the config.json field."""
    cases = [({"action_expert_depth": 5}, ["config.json: action_expert_depth", "5 action expert layers", "holds 2"]),
             ({"action_expert_variant": "gemma_300m", "action_expert_depth": None},
              ["action_expert_variant", "'gemma_300m' is width 1024", "width 128", "another model"]),
             ({"paligemma_variant": "gemma_9b"}, ["paligemma_variant", "unknown Gemma variant 'gemma_9b'"]),
             ({"paligemma_depth": "two"}, ["paligemma_depth", "positive layer count"])]
    for i, (config, words) in enumerate(cases):
        src = write_checkpoint(tiny_pack_dir, tmp_path / f"c{i}", config=config)
        assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", *words)


def test_damage_found_mid_write_leaves_the_old_pack_untouched(openpi_import, tiny_pack_dir, tmp_path):
    """A NaN in the last tensor written (action_out_proj) is found only while the GGUF is being
    written in the staging directory: the import fails naming it, the staging directory is removed,
    and the pack being replaced with --overwrite is still there byte for byte."""
    import shutil

    from vla_edge.packs.hashing import sha256_file

    rng = np.random.default_rng()

    def nan_in_out_proj(key, v):
        if key == "action_out_proj.weight":
            v = v.copy()
            v.reshape(-1)[rng.integers(v.size)] = np.nan
        return v

    src = write_checkpoint(tiny_pack_dir, tmp_path / "src", edit=nan_in_out_proj)
    out = tmp_path / "pack"
    shutil.copytree(openpi_import, out)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    r = _import(src, out, "--overwrite")
    assert r.returncode == 2, r.stderr
    assert "action.action_out.weight" in r.stderr and "1 inf/nan" in r.stderr, r.stderr
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_option_that_does_not_apply(tiny_pack_dir, tmp_path):
    r = run_cli("pack", "import", "--from", "actquant", str(tmp_path), "--out", str(tmp_path / "out"),
                "--dtype", "f16")
    assert_refused(r, tmp_path / "out", "--dtype", "does not apply")
