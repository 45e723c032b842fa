"""`pack import --from actquant` on files laid out exactly like the released ActQuant pack, and
`pack compare`. Tolerances: an import keeps the weights byte for byte, so the imported pack and
the pack it was written from act identically on the reference target (rel-L2 <= 1e-6, float32
round-off only); x86 vs reference on the imported K-quant mix: rel-L2 <= 1e-3 (as for any
quantised pack).

Only tests marked `needs_native` need vla_edge._native: the K-quant release is made with ggml's
quantisers and the x86 target is ggml. Refusals, the norm-stat forms and the OpenVLA-OFT check
use the exporter's unquantised form (`kquant=False`) or no pi0.5 file at all, and run anywhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from actquant_layout import OFT_QUANTIZED, OFT_RELEASE, write_openvla_oft_export, write_release
from cli_runner import run_cli
from import_checks import assert_refused, run_import
from vla_edge import load_policy
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack


def _native_built() -> bool:
    try:
        import vla_edge._native  # noqa: F401
    except ImportError:
        return False
    return True


needs_native = pytest.mark.skipif(not _native_built(), reason="needs vla_edge._native (ggml's quantisers, x86)")


@pytest.fixture(scope="module")
def release(tiny_pack_dir, tmp_path_factory):
    """The released K-quant mix (ggml's quantisers: only for `needs_native` tests)."""
    work = tmp_path_factory.mktemp("actquant")
    return write_release(tiny_pack_dir, work / "release", work)


@pytest.fixture(scope="module")
def plain_release(tiny_pack_dir, tmp_path_factory):
    """The exporter's output without --quant_* flags: the tiny pack's own tensors, no native needed."""
    work = tmp_path_factory.mktemp("actquant-plain")
    return write_release(tiny_pack_dir, work / "release", work, kquant=False)


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "pack"
    r = run_cli("pack", "import", "--from", "actquant", str(release), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.native
@needs_native
def test_imported_pack_verifies_and_keeps_the_gguf_byte_for_byte(release, imported, tiny_pack_dir):
    assert [f for f in verify_pack(imported, golden_target="reference") if f.level == "error"] == []
    pack = Pack.open(imported)
    assert sha256_file(pack.weights_path) == sha256_file(release / "pi05.gguf")
    assert pack.manifest.source["weights_sha256"] == sha256_file(release / "pi05.gguf")
    parent = Pack.open(tiny_pack_dir)
    # the released file has no pi05.llm.* keys: the LLM shape came from the tensors, not from defaults
    assert pack.config.llm == parent.config.llm
    # max_token_len is a runtime limit the file does not carry (pi0.5's 200 is used)
    skip = {"variant", "max_token_len"}
    assert pack.config.model_dump(exclude=skip) == parent.config.model_dump(exclude=skip)
    # only what shapes cannot say falls back to pi0.5's values, and the manifest says so
    assert sorted(pack.manifest.source["config_keys_defaulted"]) == [
        "pi05.llm.attention.layer_norm_rms_epsilon", "pi05.llm.rope.freq_base"]
    assert pack.manifest.quantization.recipe == "actquant(vision=q4k,llm=q3k,embedding=q8)"


@pytest.mark.native
@needs_native
def test_imported_pack_acts_like_its_source(release, imported):
    quantized = release.parent / "q"  # the pack write_release wrote the release from
    report = compare_policies(load_policy(imported, target="reference"), load_policy(quantized, target="reference"),
                              n_obs=2)
    assert report["rel_l2"]["max"] <= 1e-6


@pytest.mark.native
@needs_native
def test_x86_runs_the_imported_k_quant_mix(imported):
    ref, x86 = load_policy(imported, target="reference"), load_policy(imported, target="x86", threads=2)
    report = compare_policies(x86, ref, n_obs=2)
    assert report["rel_l2"]["max"] <= 1e-3


@pytest.mark.parametrize("norm_json,norm_tensors", [("openpi", False), ("none", True)])
def test_norm_stats_forms(tiny_pack_dir, tmp_path, norm_json, norm_tensors):
    src = write_release(tiny_pack_dir, tmp_path / "release", tmp_path, norm_json=norm_json, norm_tensors=norm_tensors,
                        kquant=False)
    r = run_cli("pack", "import", "--from", "actquant", str(src), "--out", str(tmp_path / "out"), "--no-golden")
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "out" / "norm_stats.json").read_text())["norm_stats"]
    assert set(stats) == {"state", "actions"} and len(stats["actions"]["q01"]) >= 6


def _import(src, out):
    return run_import("actquant", src, out)


def test_unquantised_release_imports_as_the_same_model(plain_release, tiny_pack_dir, tmp_path):
    r = run_import("actquant", plain_release, tmp_path / "out", "--no-golden")
    assert r.returncode == 0, r.stderr
    assert [f for f in verify_pack(tmp_path / "out") if f.level == "error"] == []
    pack = Pack.open(tmp_path / "out")
    assert sha256_file(pack.weights_path) == sha256_file(plain_release / "pi05.gguf")
    assert pack.manifest.quantization.recipe == "actquant(vision=none,llm=none,embedding=none)"
    report = compare_policies(load_policy(pack, target="reference"), load_policy(tiny_pack_dir, target="reference"),
                              n_obs=1)
    assert report["rel_l2"]["max"] <= 1e-6


def test_missing_companion_file(plain_release, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pi05.gguf").symlink_to(plain_release / "pi05.gguf")
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "tokenizer.model", "missing")


def test_json_without_quantiles_falls_back_to_the_gguf_stat_tensors(plain_release, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pi05.gguf", "tokenizer.model"):
        (src / name).symlink_to(plain_release / name)
    flat = json.loads((plain_release / "norm_stats.json").read_text())
    (src / "norm_stats.json").write_text(json.dumps({k: v for k, v in flat.items() if "q01" not in k}))
    r = _import(src, tmp_path / "out")
    assert r.returncode == 0, r.stderr  # the release's norm.* tensors carry q01/q99
    stats = json.loads((tmp_path / "out" / "norm_stats.json").read_text())["norm_stats"]
    assert np.allclose(stats["actions"]["q01"], flat["action_q01"], rtol=1e-6)


def test_stats_without_quantiles_anywhere(tiny_pack_dir, tmp_path):
    src = write_release(tiny_pack_dir, tmp_path / "release", tmp_path, norm_tensors=False, kquant=False)
    flat = json.loads((src / "norm_stats.json").read_text())
    (src / "norm_stats.json").write_text(json.dumps({k: v for k, v in flat.items() if "q99" not in k}))
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "q99", "quantiles")


def test_wrong_shape_and_missing_tensor(tiny_pack_dir, tmp_path):
    def widen(name, values):
        return np.zeros((values.shape[0], values.shape[1] + 8), np.float32) if name == "pali.blk.1.attn_k.weight" \
            else values
    src = write_release(tiny_pack_dir, tmp_path / "a", tmp_path / "wa", edit=widen, kquant=False)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "pali.blk.1.attn_k.weight", "shape")
    src = write_release(tiny_pack_dir, tmp_path / "b", tmp_path / "wb", kquant=False,
                        edit=lambda name, v: None if name == "action.action_out.weight" else v)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "action.action_out.weight", "missing")


def test_truncated_gguf(plain_release, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = (plain_release / "pi05.gguf").read_bytes()
    (src / "pi05.gguf").write_bytes(data[: len(data) // 2])
    for name in ("tokenizer.model", "norm_stats.json"):
        (src / name).symlink_to(plain_release / name)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "pi05.gguf")


OFT_NOT_SUPPORTED = ("openvla-oft", "OpenVLA-OFT", "recognised but not supported yet")


@pytest.mark.parametrize("files,arch,arg,evidence", [
    # the exporter's directory: every component says what it is in general.architecture
    (OFT_RELEASE, None, None, ["action_head.gguf: general.architecture 'openvla_oft_action_head'",
                               "dinov2.gguf: clip.projector_type 'openvla'"]),
    # only the quantised vision files + LLM: the vision files' projector type and DINOv2 registers
    (OFT_QUANTIZED, None, None, ["dinov2_q4_k_m.gguf: clip.projector_type 'openvla'",
                                 "siglip_q4_k_m_padded.gguf: clip.projector_type 'openvla'"]),
    # the first file (sorted) is a plain llama GGUF; the evidence is in the second; SRC a file
    ({"llm_bf16.gguf": "llm", "proprio_projector.gguf": "proprio_projector"}, None, "llm_bf16.gguf",
     ["proprio_projector.gguf: general.architecture 'openvla_proprio_projector'"]),
    # no telling architecture at all: the action head's tensor names alone
    ({"action_head.gguf": "action_head"}, {"action_head": "mlp"}, None,
     ["tensor 'model.mlp_resnet_blocks.0.ffn.0.weight'"]),
])
def test_openvla_oft_export_is_recognised_as_unsupported(tmp_path, files, arch, arg, evidence):
    src = write_openvla_oft_export(tmp_path / "oft_combined_gguf", files, arch)
    r = _import(src / arg if arg else src, tmp_path / "out")
    assert_refused(r, tmp_path / "out", *OFT_NOT_SUPPORTED, *evidence)


def test_every_gguf_of_the_directory_is_read(tmp_path):
    from vla_edge.importers.actquant import _scan_ggufs

    found = {s.name: s for s in _scan_ggufs(write_openvla_oft_export(tmp_path / "oft", OFT_RELEASE))}
    assert {n: s.arch for n, s in found.items()} == {
        "action_head.gguf": "openvla_oft_action_head", "dinov2.gguf": "dinov2", "llm_bf16.gguf": "llama",
        "proj.gguf": "proj", "proprio_projector.gguf": "openvla_proprio_projector", "siglip.gguf": "siglip"}
    assert {n for n, s in found.items() if s.openvla} == {"action_head.gguf", "dinov2.gguf",
                                                          "proprio_projector.gguf", "siglip.gguf"}
    assert any("v.reg_embd" in e for e in found["dinov2.gguf"].openvla)
    assert any("model.mlp_resnet_blocks.0" in e for e in found["action_head.gguf"].openvla)
    assert not any("v.reg_embd" in e for e in found["siglip.gguf"].openvla)


def test_other_ggufs_are_not_called_openvla(tiny_pack_dir, tmp_path):
    # a lone llama GGUF (the OFT LLM looks like any Llama-2): missing pi05.gguf, with what is there
    src = write_openvla_oft_export(tmp_path / "llm_only", {"llm_bf16.gguf": "llm"})
    r = _import(src, tmp_path / "out")
    assert_refused(r, tmp_path / "out", "pi05.gguf", "missing", "llm_bf16.gguf (architecture 'llama')")
    assert "openvla" not in r.stderr.lower()
    # a pi05.gguf that is no pi0.5 export: its architecture is named; with OFT siblings, the family
    src = write_openvla_oft_export(tmp_path / "renamed", {"pi05.gguf": "llm"})
    shutil.copyfile(tiny_pack_dir / "tokenizer.model", src / "tokenizer.model")
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "pi05.gguf", "architecture 'llama'",
                   "expected 'pi05'")
    write_openvla_oft_export(tmp_path / "head", {"action_head.gguf": "action_head"})
    shutil.copyfile(tmp_path / "head" / "action_head.gguf", src / "action_head.gguf")
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", *OFT_NOT_SUPPORTED, "action_head.gguf")


def test_unknown_formats_list_the_known_ones(tmp_path):
    r = run_cli("pack", "import", "--from", "awq", str(tmp_path), "--out", str(tmp_path / "out"))
    assert_refused(r, tmp_path / "out", "awq", "omega-qvla", "torchao-int8wo")
