"""`pack import --from omega-qvla` on quantized.pt files written in the released layout
(omega_layout.py) over an fp16 base checkpoint written from the tiny pack (checkpoint_layout.py).

Tolerances: an imported layer must reproduce Omega-QVLA's own runtime formula (GptqLinear:
rotate, fake-quantise with the step's table row, dense fp16 weight, rotate back), evaluated here
in torch from the record, to rel <= 1e-3 (int4 codes recovered from fp16 values: ~2^-10 relative).
The two rotations round differently, so an activation within float error of a .5 tie may take the
neighbouring code (one such code moved ffn_down by 5.6e-3): the test requires every moved code to
sit within 1e-3 of a tie, fewer than 1 in 100 to move, and the bound to hold with the runtime
given our code at those ties. The whole W4A4 pack is only reported
against its fp32 parent (4-bit activations: measured rel-L2 ~1e-2 on the tiny model), bounded
loosely at 0.1 and required to be non-zero.

The --base check: a record's dequantised weight against the base weight in the same rotated basis
is ~0.10 relative Frobenius error for the right base (4-bit rounding of Hadamard-rotated weights,
predicted 3 / (7 sqrt 12) ~ 0.12) and ~sqrt(2) for independent weights of the same RMS; the
importer refuses above BASE_REL_ERROR_MAX = 0.5."""

from __future__ import annotations

import copy
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from checkpoint_layout import source_key, write_checkpoint
from import_checks import assert_refused, run_import
from omega_layout import BLOCK, BLOCK_OUT, build_records, module_name, write_quantized_pt
from vla_edge import load_policy
from vla_edge.errors import VlaEdgeError
from vla_edge.importers.omega_qvla import BASE_REL_ERROR_MAX
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.manifest import Manifest, RotationBlocks
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack
from vla_edge.packs.w4a4 import part_name, read_layers
from vla_edge.targets.reference.w4a4 import W4A4Linear, quantize, rotate_input

Q_PROJ = "paligemma_with_expert.gemma_expert.model.layers.0.self_attn.q_proj"


class NotAWeight:
    """Stands for any custom class in a pickle: loading it needs code to run."""


@pytest.fixture(scope="module")
def omega(tiny_pack_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("omega")
    base = write_checkpoint(tiny_pack_dir, work / "base", dtype=torch.float16)
    records = build_records(tiny_pack_dir)
    src = write_quantized_pt(records, work / "omega")
    out = work / "pack"
    r = run_import("omega-qvla", src.parent, out, "--base", str(base))
    assert r.returncode == 0, r.stderr
    return {"work": work, "base": base, "records": records, "pack": out}


def _refused(omega, tmp_path, records, *words, extra=()):
    src = write_quantized_pt(records, tmp_path / "src")
    out = tmp_path / "pack"
    r = run_import("omega-qvla", src, out, "--base", str(omega["base"]), *extra)
    assert_refused(r, out, *words)
    return r


def _edit(records, module, **changes):
    new = dict(records)
    new[module] = {**records[module], **changes}
    return new


def test_imported_pack_verifies_and_holds_the_expert_as_w4a4(omega):
    assert [f for f in verify_pack(omega["pack"]) if f.level == "error"] == []
    pack = Pack.open(omega["pack"])
    section = pack.manifest.quantization.w4a4
    assert pack.manifest.targets == ["reference"]
    assert section.num_steps == pack.config.num_flow_steps == 10
    assert (section.weight_group_size, section.act_group_size, section.act_scales) == (128, 1, "per_step")
    assert len(section.layers) == 2 * 7 and all(n.startswith("action.blk.") for n in section.layers)
    infos = GGUFFile(pack.weights_path).tensor_infos()
    assert "action.blk.0.attn_q.weight" not in infos
    assert infos["action.blk.0.attn_q.w4a4.codes"].n_bytes == 256 * 128 // 2
    assert infos["action.action_in.weight"].ggml_type == "F16"  # sensitive layers keep the base precision
    assert pack.manifest.source["w4a4_weight_max_rel_error"] < 2e-3
    with pytest.raises(VlaEdgeError, match="x86"):
        load_policy(omega["pack"], target="x86")


def _omega_quotients(record, x, step):
    """GptqLinear.forward for a rank-0 dit_svdquant_v1 record, written from its source, up to
    rounding: the rotated activations divided by the step's scales, and those scales."""
    x = torch.from_numpy(x)
    blocks, perm = record["duquant_rotation_blocks"].float(), record["duquant_rotation_perm"]
    n, b = blocks.shape[0], blocks.shape[1]
    x = torch.bmm(x[:, perm].reshape(-1, n, b).transpose(0, 1), blocks).transpose(0, 1).reshape(len(x), -1)
    s = record["act_scale_table"].clamp_min(1e-8)[step]
    return x / s, s


def _omega_product(record, xq):
    """The rest of GptqLinear.forward from the fake-quantised activations: dense product, rotate back."""
    y = torch.nn.functional.linear(xq, record["weight_res_q"].float())
    ob = record["duquant_rotation_out_blocks"].float()
    y = torch.bmm(y.reshape(-1, ob.shape[0], ob.shape[1]).transpose(0, 1), ob).transpose(0, 1).reshape(len(y), -1)
    return y.double().numpy()


def test_layers_reproduce_the_omega_runtime(omega):
    pack = Pack.open(omega["pack"])
    section = pack.manifest.quantization.w4a4
    layers = read_layers(pack.weights, section, pack.family.tensor_specs(pack.config))
    rng = np.random.default_rng()
    for name in ("action.blk.0.attn_q.weight", "action.blk.1.ffn_down.weight", "action.blk.1.attn_v.weight"):
        record, layer = omega["records"][module_name(name)], layers[name]
        lin = W4A4Linear(layer, "per_step", section.num_steps)
        for step in (0, 4, 9):
            # activations at the calibrated range: table row * 7 is the channel's 99.9 % |x| in the rotated basis
            x = (rng.standard_normal((6, layer.shape[1])) * float(record["act_scale_table"][step].mean()) * 3
                 ).astype(np.float32)
            ratio, s = _omega_quotients(record, x, step)
            codes = quantize(rotate_input(x, layer.perm, layer.rot_in), lin.activation_scales(None, step, 10),
                             layer.act_group)
            theirs_codes = torch.clamp(torch.round(ratio), -8, 7)
            moved = codes != theirs_codes.numpy()
            # the two rotations round differently (float64 then float32 here, float32 bmm there), so a
            # quotient within float error of a .5 tie may land one code apart; nowhere else
            distance_to_tie = np.abs(np.abs(ratio.numpy() - np.floor(ratio.numpy())) - 0.5)
            assert np.all(distance_to_tie[moved] < 1e-3), (name, step, ratio.numpy()[moved])
            assert moved.mean() < 1e-2, (name, step, int(moved.sum()))
            # with those tie codes taken as ours, the runtime's formula must agree with our layer
            ours = lin(x, step, 10)
            theirs = _omega_product(record, torch.where(torch.from_numpy(moved),
                                                        torch.from_numpy(codes.astype(np.float32)), theirs_codes) * s)
            assert np.linalg.norm(ours - theirs) <= 1e-3 * np.linalg.norm(theirs), (name, step)


def test_w4a4_pack_stays_close_to_its_fp32_parent(omega, tiny_pack_dir):
    report = compare_policies(load_policy(omega["pack"], target="reference"),
                              load_policy(tiny_pack_dir, target="reference"), n_obs=3, seed=5)
    print("omega W4A4 vs fp32 parent:", report["rel_l2"], report["first_action_l2"])
    assert 0 < report["rel_l2"]["max"] < 0.1
    assert all(0 < v for v in report["max_abs_per_dim"].values())


def test_table_must_match_the_configured_steps(omega, tmp_path):
    """A pack whose config runs another number of flow steps than its tables hold does not run."""
    pack_dir = tmp_path / "p"
    shutil.copytree(omega["pack"], pack_dir)
    manifest = yaml.safe_load((pack_dir / "pack.yaml").read_text())
    manifest["config"]["num_flow_steps"] = 5
    (pack_dir / "pack.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(VlaEdgeError, match=r"num_steps 10 .*num_flow_steps 5"):
        Pack.open(pack_dir)
    manifest["quantization"]["w4a4"]["num_steps"] = 5
    (pack_dir / "pack.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(VlaEdgeError, match=r"act_scale'.*\[10, 128\]: expected 5 rows"):
        load_policy(pack_dir, target="reference")


def test_sensitive_layer_needs_the_flag_and_warns(omega, tiny_pack_dir, tmp_path):
    records = dict(omega["records"])
    records.update({k: v for k, v in build_records(tiny_pack_dir, ["action.action_in.weight"]).items()
                    if k != "__meta__"})
    _refused(omega, tmp_path / "a", records, "action_in_proj", "--allow-sensitive-a4", "collapse")
    src = write_quantized_pt(records, tmp_path / "b")
    r = run_import("omega-qvla", src, tmp_path / "b" / "pack", "--base", str(omega["base"]), "--allow-sensitive-a4")
    assert r.returncode == 0, r.stderr
    assert "sensitive" in r.stderr and "action.action_in.weight" in r.stderr
    pack = Pack.open(tmp_path / "b" / "pack")
    assert "action.action_in.weight" in pack.manifest.quantization.w4a4.layers
    assert pack.manifest.source["sensitive_layers_a4"] == ["action.action_in.weight"]
    assert [f for f in verify_pack(tmp_path / "b" / "pack") if f.level == "error"] == []


def test_missing_companions(omega, tmp_path):
    out = tmp_path / "pack"
    (tmp_path / "empty").mkdir()
    assert_refused(run_import("omega-qvla", tmp_path / "empty", out, "--base", str(omega["base"])), out,
                   "quantized.pt", "missing")
    src = write_quantized_pt(omega["records"], tmp_path / "src")
    assert_refused(run_import("omega-qvla", src, out), out, "--base", "fp16 pi0.5 base checkpoint")
    assert_refused(run_import("omega-qvla", src, out, "--base", str(tmp_path / "empty")), out, "model.safetensors")


def test_pickle_needing_code_is_refused_not_run(omega, tmp_path):
    records = _edit(omega["records"], Q_PROJ, calibration=NotAWeight())
    _refused(omega, tmp_path, records, "weights_only", "refused")


@pytest.mark.parametrize("case, words", [
    ("gr00t", ("gr00t-n1.5", "not supported yet")),
    ("meta_format", ("__meta__.format", "pi05_a2lite_gptq_perstep_v1")),
    ("a8", ("__meta__.a_bits", "W4A4")),
    ("table_rows", ("act_scale_table", "[10, 128]")),
    ("steps", ("8 denoising steps", "runs 10")),
    ("weight_shape", ("weight_res_q", "[256, 96]")),
    ("weight_missing", ("weight_res_q", "missing")),
    ("off_grid", ("not on a signed 4-bit grid", "--group-size")),
    ("lowrank", ("low-rank", "rank 2")),
    ("paligemma", ("outside the action expert",)),
    ("pi0", ("pi0", "state_proj")),
    ("extra_layer", ("action.blk.5.attn_q.weight", "2 layers")),
    ("expert_lm_head", ("record 'paligemma_with_expert.gemma_expert.lm_head'",
                        "no Linear module of the pi0.5 action expert")),
    ("llm_norm", ("record 'paligemma_with_expert.paligemma.model.language_model.norm'",
                  "no Linear module of the pi0.5 action expert")),
])
def test_bad_quantized_pt_is_refused(omega, tmp_path, case, words):
    rec = omega["records"]
    q = rec[Q_PROJ]
    if case == "gr00t":
        bad = {"action_head.model.transformer_blocks.0.attn1.to_q": q, "__meta__": rec["__meta__"]}
    elif case in ("meta_format", "a8"):
        meta = {**rec["__meta__"], **({"format": "gr_svdquant"} if case == "meta_format" else {"a_bits": 8})}
        bad = {**rec, "__meta__": meta}
    elif case == "table_rows":
        bad = _edit(rec, Q_PROJ, act_scale_table=q["act_scale_table"][:8])
    elif case == "steps":
        bad = {k: ({**v, "act_scale_table": v["act_scale_table"][:8]} if k != "__meta__" else {**v, "num_steps": 8})
               for k, v in rec.items()}
    elif case == "weight_shape":
        bad = _edit(rec, Q_PROJ, weight_res_q=q["weight_res_q"][:, :96])
    elif case == "weight_missing":
        bad = copy.copy(rec)
        bad[Q_PROJ] = {k: v for k, v in q.items() if k != "weight_res_q"}
    elif case == "off_grid":
        bad = _edit(rec, Q_PROJ, weight_res_q=q["weight_res_q"] + 1e-2 * torch.randn(q["weight_res_q"].shape).half())
    elif case == "lowrank":
        bad = _edit(rec, Q_PROJ, rank=2, lowrank_A=torch.zeros(256, 2).half(), lowrank_B=torch.zeros(128, 2).half())
    else:
        module = {"paligemma": "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj",
                  "pi0": "state_proj",
                  "extra_layer": "paligemma_with_expert.gemma_expert.model.layers.5.self_attn.q_proj",
                  "expert_lm_head": "paligemma_with_expert.gemma_expert.lm_head",
                  "llm_norm": "paligemma_with_expert.paligemma.model.language_model.norm"}[case]
        bad = {**rec, module: q}
    _refused(omega, tmp_path, bad, *words)


def test_right_base_passes_with_its_4bit_error_recorded(omega, tiny_pack_dir):
    """The recorded error, recomputed independently from the record's dense matrices
    (duquant_rotation_out · W · duquant_rotation vs weight_res_q) instead of the pack's blocks and
    codes: codes · scales reproduce weight_res_q to 2^-9 per value, so the two agree to 2e-3."""
    pack = Pack.open(omega["pack"])
    base = GGUFFile(Pack.open(tiny_pack_dir).weights_path)
    errors = []
    for name in pack.manifest.quantization.w4a4.layers:
        record = omega["records"][module_name(name)]
        w = base.float32(name).astype(np.float16).astype(np.float64)  # the fp16 base checkpoint's values
        expect = record["duquant_rotation_out"].double().numpy() @ w @ record["duquant_rotation"].double().numpy()
        got = record["weight_res_q"].double().numpy()
        errors.append(np.linalg.norm(got - expect) / np.linalg.norm(expect))
    recorded = pack.manifest.source["w4a4_vs_base_max_rel_error"]
    print("omega W4A4 vs base, rel Frobenius per layer:", np.round(errors, 4))
    assert recorded == pytest.approx(max(errors), abs=2e-3)
    assert 0.05 < recorded < 0.2  # 4-bit rounding: ~0.12 predicted, well under the 0.5 refusal threshold


def test_base_the_file_was_not_made_from_is_refused(omega, tiny_pack_dir, tmp_path):
    """One expert linear of the base replaced by fresh random values of the same RMS: every shape
    still matches, only the values say the file was built from another model."""
    rng = np.random.default_rng()
    swapped = "action.blk.1.ffn_down.weight"

    def edit(key, values):
        return rng.standard_normal(values.shape) * np.sqrt(np.mean(values ** 2)) if key == source_key(swapped) \
            else values

    base = write_checkpoint(tiny_pack_dir, tmp_path / "base", dtype=torch.float16, edit=edit)
    src = write_quantized_pt(omega["records"], tmp_path / "src")
    out = tmp_path / "pack"
    r = run_import("omega-qvla", src, out, "--base", str(base))
    assert_refused(r, out, f"record '{module_name(swapped)}'", swapped, f"> {BASE_REL_ERROR_MAX}",
                   "the --base checkpoint is not the one the quantised file was made from")
    err = float(re.search(r"relative Frobenius error ([0-9.]+) >", r.stderr)[1])
    # independent weights of equal RMS: sqrt(1 + 1 + 4-bit error^2) ~ 1.42, sampling noise < 1 %
    assert 1.3 < err < 1.55, err


def test_manifest_states_the_rotation_its_tensors_hold(omega):
    pack = Pack.open(omega["pack"])
    section = pack.manifest.quantization.w4a4
    rotation = section.rotation
    # every tiny expert width is a multiple of the builder's 64-wide blocks: no layer differs
    assert (rotation.kind, rotation.blocks, rotation.layer_blocks) == (
        "duquant", RotationBlocks(input=BLOCK, output=BLOCK_OUT), {})
    infos = GGUFFile(pack.weights_path).tensor_infos()
    for name in section.layers:
        assert infos[part_name(name, "rot_in")].shape[1:] == (BLOCK, BLOCK)
        assert infos[part_name(name, "rot_out")].shape[1:] == (BLOCK_OUT, BLOCK_OUT)
    written = yaml.safe_load((omega["pack"] / "pack.yaml").read_text())["quantization"]["w4a4"]["rotation"]
    assert written == {"kind": "duquant", "blocks": {"input": BLOCK, "output": BLOCK_OUT}, "layer_blocks": {}}
    assert Manifest.model_validate(yaml.safe_load(pack.manifest.to_yaml())).quantization.w4a4.rotation == rotation


def test_unrotated_layer_is_listed_with_its_own_blocks(omega, tiny_pack_dir, tmp_path):
    """A record without duquant_* keys (GptqLinear runs it unrotated) is imported with identity
    blocks of one and no output rotation, and the manifest lists it as the exception."""
    name = "action.blk.1.attn_v.weight"
    records = {**omega["records"], **{k: v for k, v in build_records(tiny_pack_dir, [name], rotate=False).items()
                                      if k != "__meta__"}}
    src = write_quantized_pt(records, tmp_path / "src")
    r = run_import("omega-qvla", src, tmp_path / "pack", "--base", str(omega["base"]))
    assert r.returncode == 0, r.stderr
    rotation = Pack.open(tmp_path / "pack").manifest.quantization.w4a4.rotation
    assert rotation.blocks == RotationBlocks(input=BLOCK, output=BLOCK_OUT)
    assert rotation.layer_blocks == {name: RotationBlocks(input=1)}
    assert [f for f in verify_pack(tmp_path / "pack") if f.level == "error"] == []


@pytest.mark.parametrize("claim, words", [
    (lambda r: r["blocks"].update(input=32),
     ("action.blk.0.attn_q.w4a4.rot_in", "blocks of 64", "quantization.w4a4.rotation.blocks.input says 32")),
    (lambda r: r["blocks"].pop("output"),
     ("action.blk.0.attn_q.w4a4.rot_out", "blocks of 64", "rotation.blocks.output says no output rotation")),
    (lambda r: r["layer_blocks"].update({"action.blk.1.ffn_down.weight": {"input": 128, "output": 64}}),
     ("action.blk.1.ffn_down.w4a4.rot_in", "layer_blocks['action.blk.1.ffn_down.weight'].input says 128")),
])
def test_manifest_claiming_other_rotation_blocks_is_refused(omega, tmp_path, claim, words):
    pack_dir = tmp_path / "p"
    shutil.copytree(omega["pack"], pack_dir)
    manifest = yaml.safe_load((pack_dir / "pack.yaml").read_text())
    claim(manifest["quantization"]["w4a4"]["rotation"])
    (pack_dir / "pack.yaml").write_text(yaml.safe_dump(manifest))
    errors = [f"{f.where}: {f.message}" for f in verify_pack(pack_dir) if f.level == "error"]
    assert any(all(w in e for w in words) for e in errors), errors
    with pytest.raises(VlaEdgeError) as exc:
        load_policy(pack_dir, target="reference")
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_gguf_recipes_refuse_a_w4a4_pack(omega, tmp_path):
    from cli_runner import run_cli

    out = tmp_path / "q8"
    r = run_cli("pack", "quantize", str(omega["pack"]), "--recipe", "q8_0", "--out", str(out))
    assert r.returncode == 2 and "W4A4" in r.stderr and "fp base pack" in r.stderr, r.stderr
    assert not out.exists()


def test_onnx_export_refuses_a_w4a4_pack(omega, tmp_path):
    from cli_runner import run_cli

    out = tmp_path / "onnx"
    r = run_cli("pack", "export-onnx", str(omega["pack"]), "--out", str(out))
    assert r.returncode == 2 and "quantization.w4a4" in r.stderr and "no ONNX form" in r.stderr, r.stderr
    assert not out.exists()
