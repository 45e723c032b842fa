"""`pack import --from actquant` on files laid out exactly like the released ActQuant pack, and
`pack compare`. Tolerances: an import keeps the weights byte for byte, so the imported pack and
the pack it was written from act identically on the reference target (rel-L2 <= 1e-6, float32
round-off only); x86 vs reference on the imported K-quant mix: rel-L2 <= 1e-3 (as for any
quantised pack)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actquant_layout import write_release
from cli_runner import run_cli
from import_checks import assert_refused, run_import
from vla_edge import load_policy
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack

pytest.importorskip("vla_edge._native", reason="the fixture quantises with ggml's quantisers")


@pytest.fixture(scope="module")
def release(tiny_pack_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("actquant")
    return write_release(tiny_pack_dir, work / "release", work)


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "pack"
    r = run_cli("pack", "import", "--from", "actquant", str(release), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


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


def test_imported_pack_acts_like_its_source(release, imported):
    quantized = release.parent / "q"  # the pack write_release wrote the release from
    report = compare_policies(load_policy(imported, target="reference"), load_policy(quantized, target="reference"),
                              n_obs=2)
    assert report["rel_l2"]["max"] <= 1e-6


def test_x86_runs_the_imported_k_quant_mix(imported):
    ref, x86 = load_policy(imported, target="reference"), load_policy(imported, target="x86", threads=2)
    report = compare_policies(x86, ref, n_obs=2)
    assert report["rel_l2"]["max"] <= 1e-3


@pytest.mark.parametrize("norm_json,norm_tensors", [("openpi", False), ("none", True)])
def test_norm_stats_forms(tiny_pack_dir, tmp_path, norm_json, norm_tensors):
    src = write_release(tiny_pack_dir, tmp_path / "release", tmp_path, norm_json=norm_json, norm_tensors=norm_tensors)
    r = run_cli("pack", "import", "--from", "actquant", str(src), "--out", str(tmp_path / "out"), "--no-golden")
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "out" / "norm_stats.json").read_text())["norm_stats"]
    assert set(stats) == {"state", "actions"} and len(stats["actions"]["q01"]) >= 6


def _import(src, out):
    return run_import("actquant", src, out)


def test_missing_companion_file(release, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pi05.gguf").symlink_to(release / "pi05.gguf")
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "tokenizer.model", "missing")


def test_json_without_quantiles_falls_back_to_the_gguf_stat_tensors(release, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pi05.gguf", "tokenizer.model"):
        (src / name).symlink_to(release / name)
    flat = json.loads((release / "norm_stats.json").read_text())
    (src / "norm_stats.json").write_text(json.dumps({k: v for k, v in flat.items() if "q01" not in k}))
    r = _import(src, tmp_path / "out")
    assert r.returncode == 0, r.stderr  # the release's norm.* tensors carry q01/q99
    stats = json.loads((tmp_path / "out" / "norm_stats.json").read_text())["norm_stats"]
    assert np.allclose(stats["actions"]["q01"], flat["action_q01"], rtol=1e-6)


def test_stats_without_quantiles_anywhere(tiny_pack_dir, tmp_path):
    src = write_release(tiny_pack_dir, tmp_path / "release", tmp_path, norm_tensors=False)
    flat = json.loads((src / "norm_stats.json").read_text())
    (src / "norm_stats.json").write_text(json.dumps({k: v for k, v in flat.items() if "q99" not in k}))
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "q99", "quantiles")


def test_wrong_shape_and_missing_tensor(tiny_pack_dir, tmp_path):
    def widen(name, values):
        return np.zeros((values.shape[0], values.shape[1] + 8), np.float32) if name == "pali.blk.1.attn_k.weight" \
            else values
    src = write_release(tiny_pack_dir, tmp_path / "a", tmp_path / "wa", edit=widen)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "pali.blk.1.attn_k.weight", "shape")
    src = write_release(tiny_pack_dir, tmp_path / "b", tmp_path / "wb",
                        edit=lambda name, v: None if name == "action.action_out.weight" else v)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "action.action_out.weight", "missing")


def test_truncated_gguf(release, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = (release / "pi05.gguf").read_bytes()
    (src / "pi05.gguf").write_bytes(data[: len(data) // 2])
    for name in ("tokenizer.model", "norm_stats.json"):
        (src / name).symlink_to(release / name)
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "pi05.gguf")


def test_openvla_export_is_recognised_as_unsupported(tmp_path):
    from vla_edge.packs.gguf_io import PlannedTensor, write_gguf

    src = tmp_path / "openvla"
    src.mkdir()
    values = np.random.default_rng().standard_normal((8, 32)).astype(np.float32)
    write_gguf(src / "openvla-oft.gguf", "llama", {"general.name": "openvla-7b-oft"},
               [PlannedTensor("action_head.fc1.weight", (8, 32), "F32", lambda: values)])
    assert_refused(_import(src, tmp_path / "out"), tmp_path / "out", "openvla-oft", "not supported yet")


def test_unknown_formats_list_the_known_ones(tmp_path):
    r = run_cli("pack", "import", "--from", "awq", str(tmp_path), "--out", str(tmp_path / "out"))
    assert_refused(r, tmp_path / "out", "awq", "omega-qvla", "torchao-int8wo")
