"""`pack quantize`: recipes, ggml's quantisers, and quantised packs on x86 vs the reference.

Tolerances:
- x86 vs reference on the *same* quantised weights (the reference dequantises them to float32):
  action chunk rel-L2 <= 1e-3. ggml also rounds activations to 8 bits for quantised matmuls,
  which is the whole difference.
- ggml quantise -> gguf-py dequantise round trip on N(0,1) rows, rel-L2 per type (from the bits
  each format keeps): Q8_0 <= 0.01, Q6_K <= 0.02, Q4_K <= 0.12, Q3_K <= 0.25.
The error of each recipe against the un-quantised parent is printed (reported, not asserted
beyond "finite and below 50%": random weights say nothing about a trained policy's accuracy).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from cli_runner import run_cli
from vla_edge import load_policy
from vla_edge.families.pi05.config import FULL
from vla_edge.families.pi05.tensors import tensor_specs
from vla_edge.packs.gguf_io import GGUFFile, PlannedTensor
from vla_edge.packs.golden import random_observation
from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.recipes import RECIPES, plan_pack
from vla_edge.packs.verify import verify_pack
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.native
native = pytest.importorskip("vla_edge._native")

GGUF_RECIPES = ["q8_0", "q4_k_m", "actquant-3.97"]


@pytest.fixture(scope="module")
def quantized(tiny_pack_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized")
    return {r: quantize_pack(tiny_pack_dir, r, root / r) for r in GGUF_RECIPES}


@pytest.mark.parametrize("recipe", GGUF_RECIPES)
def test_quantized_pack_is_valid_and_follows_its_recipe(quantized, tiny_pack_dir, recipe):
    path = quantized[recipe]
    errors = [f for f in verify_pack(path, golden_target="reference") if f.level == "error"]
    assert errors == []
    pack = Pack.open(path)
    plans = plan_pack(tensor_specs(pack.config), recipe)
    infos = GGUFFile(pack.weights_path).tensor_infos()
    assert {n: (i.ggml_type, i.shape) for n, i in infos.items()} == \
        {n: (p.ggml_type, p.stored_shape) for n, p in plans.items()}
    q = pack.manifest.quantization
    assert q.recipe == recipe
    assert q.exceptions == {n: p.note for n, p in plans.items() if p.note}
    parent = Pack.open(tiny_pack_dir, check="size").manifest
    assert pack.manifest.source["quantized_from"] == parent.name
    assert pack.manifest.source["parent_weights_sha256"] == parent.files.weights.sha256


@pytest.mark.parametrize("recipe", GGUF_RECIPES)
def test_x86_matches_reference_on_the_same_quantized_weights(quantized, tiny_pack_dir, recipe):
    ref = load_policy(quantized[recipe], target="reference")
    x86 = load_policy(quantized[recipe], target="x86", threads=2)
    parent = load_policy(tiny_pack_dir, target="reference")
    rng = np.random.default_rng()
    for _ in range(2):
        obs = random_observation(ref.pack, rng, prompt="put the cup on the plate")
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        expected = ref.infer(obs, noise=noise).actions
        err = rel_l2(x86.infer(obs, noise=noise).actions, expected)
        assert err <= 1e-3, f"{recipe}: x86 vs reference rel-L2 {err:.2e}"
        vs_parent = rel_l2(expected, parent.infer(obs, noise=noise).actions)
        print(f"{recipe}: x86 vs reference {err:.2e}; quantised vs fp32 parent {vs_parent:.2e} (reported)")
        assert np.isfinite(vs_parent) and vs_parent < 0.5


def test_real_k_quant_tensors_in_the_tiny_packs(quantized):
    """The tiny LLM (hidden 256) takes K-quants unpadded; vision (96) is padded to 256."""
    infos = GGUFFile(Pack.open(quantized["actquant-3.97"]).weights_path).tensor_infos()
    assert infos["pali.blk.0.attn_q.weight"].ggml_type == "Q3_K"
    assert infos["pali.blk.0.ffn_down.weight"].ggml_type == "Q4_K"
    assert infos["v.blk.0.attn_q.weight"].ggml_type == "Q4_K"
    assert infos["v.blk.0.attn_q.weight"].shape == (96, 256)
    assert infos["embed.weight"].ggml_type == "Q8_0"
    assert infos["action.blk.0.attn_q.weight"].ggml_type == "F16"


@pytest.mark.parametrize("qtype,bound", [("Q8_0", 0.01), ("Q6_K", 0.02), ("Q4_K", 0.12), ("Q3_K", 0.25)])
def test_ggml_quantisers_round_trip_through_gguf_py(qtype, bound):
    rng = np.random.default_rng()
    values = rng.standard_normal((8, 512)).astype(np.float32)
    blocks = native.quantize(values, qtype)
    back = dequantize(blocks, GGMLQuantizationType[qtype]).reshape(values.shape)
    err = rel_l2(back, values)
    assert 0 < err <= bound, f"{qtype}: rel-L2 {err:.3f}"


def _round_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest BF16 (ties to even), back as float32: the reference for BF16 widening."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32)
    return (rounded << 16).view(np.float32)


def _from_bf16_bits(u16: np.ndarray) -> np.ndarray:
    return (u16.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q6_K", "Q4_K", "Q3_K"])
@pytest.mark.parametrize("threads", [1, 3])
def test_widening_to_f16_equals_gguf_py_dequantised_rows_rounded(qtype, threads):
    """How GPU device weights are widened (device_weights=f16, the default on discrete GPUs): each
    quantised row decoded by ggml and rounded to F16, split over threads. Against gguf-py's own
    dequantiser (float32, an independent implementation of the formats) rounded by NumPy: equal
    up to one F16 rounding step where the two float32 decodes differ in their last bits."""
    rng = np.random.default_rng()
    rows = int(rng.integers(5, 40))  # odd counts: the last thread gets a short slice
    values = rng.standard_normal((rows, 512)).astype(np.float32)
    blocks = native.quantize(values, qtype)
    got = native.widen(blocks, qtype, 512, threads).view(np.float16).astype(np.float32)
    want = dequantize(blocks, GGMLQuantizationType[qtype]).reshape(values.shape).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=2**-10, atol=2**-24)
    assert rel_l2(got, want) <= 1e-5


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K", "F16"])
@pytest.mark.parametrize("threads", [1, 3])
def test_widening_to_bf16_equals_gguf_py_dequantised_rows_rounded(qtype, threads):
    """device_weights=bf16 converts quantised and F16 matrices to BF16: ggml's decode, then its
    round-to-nearest-even. Reference: gguf-py's dequantiser, rounded to BF16 by bit arithmetic
    (NumPy has no BF16); one BF16 step (2^-8 relative) where the float32 decodes differ last-bit."""
    rng = np.random.default_rng()
    rows = int(rng.integers(5, 40))
    values = (rng.standard_normal((rows, 512)) * rng.uniform(0.01, 10)).astype(np.float32)
    blocks = native.quantize(values, qtype)
    got = _from_bf16_bits(native.widen(blocks, qtype, 512, threads, to="BF16"))
    want = _round_to_bf16(dequantize(blocks, GGMLQuantizationType[qtype]).reshape(values.shape))
    np.testing.assert_allclose(got, want, rtol=2**-7, atol=0)
    assert rel_l2(got, want) <= 1e-4
    assert 0 < rel_l2(got, values) < 0.15  # the stored values (Q4_K alone is ~7% off Gaussian rows), not zeros


def test_widening_refuses_rows_of_the_wrong_size_and_narrow_targets():
    blocks = native.quantize(np.random.default_rng().standard_normal((4, 512)).astype(np.float32), "Q4_K")
    with pytest.raises(ValueError, match="widen: Q4_K rows of 1024 values take 576 bytes, got a 2-D array of 288-byte rows"):
        native.widen(blocks, "Q4_K", 1024, 1)
    with pytest.raises(ValueError, match="cannot widen to q8_0, only to F16 or BF16"):
        native.widen(blocks, "Q4_K", 512, 1, to="Q8_0")


def _bits(plans, specs, group: str) -> float:
    stored = sum(PlannedTensor(n, p.stored_shape, p.ggml_type, lambda: np.empty(0)).n_bytes
                 for n, p in plans.items() if specs[n].group == group and specs[n].is_matrix)
    logical = sum(int(np.prod(specs[n].shape)) for n in plans if specs[n].group == group and specs[n].is_matrix)
    return 8 * stored / logical


def test_full_size_recipe_rules():
    specs = tensor_specs(FULL)
    act = plan_pack(specs, "actquant-3.97")
    assert 3.9 <= _bits(act, specs, "llm") <= 4.0
    assert act["v.blk.3.attn_q.weight"].stored_shape == (1152, 1280)  # released vision padding
    assert act["v.blk.3.ffn_down.weight"].ggml_type == "Q4_K"  # 4352 = 17 * 256
    assert act["embed.weight"].ggml_type == "Q8_0"
    assert {act[n].ggml_type for n in specs if specs[n].group == "action_expert" and specs[n].is_matrix} == {"F16"}
    assert {act[n].ggml_type for n in ("mm.0.weight", "v.patch_embd.weight", "action.action_in.weight")} == {"F16"}
    km = plan_pack(specs, "q4_k_m")
    assert km["pali.blk.0.ffn_down.weight"].ggml_type == "Q6_K"  # first eighth: more bits
    assert km["pali.blk.3.ffn_down.weight"].ggml_type == "Q4_K"
    assert km["pali.blk.4.attn_v.weight"].ggml_type == "Q6_K"  # every third layer after the first eighth
    assert set(RECIPES) >= set(GGUF_RECIPES)


def test_bad_input_is_refused_without_output(tiny_pack_copy, tmp_path):
    out = tmp_path / "out"
    r = run_cli("pack", "quantize", str(tiny_pack_copy), "--recipe", "q5_x", "--out", str(out))
    assert r.returncode == 2 and "--recipe" in r.stderr and "actquant-3.97" in r.stderr
    assert not out.exists()
    out.mkdir()
    r = run_cli("pack", "quantize", str(tiny_pack_copy), "--recipe", "q8_0", "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr
    weights = tiny_pack_copy / "pi05.gguf"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    r = run_cli("pack", "quantize", str(tiny_pack_copy), "--recipe", "q8_0", "--out", str(fresh))
    assert r.returncode == 2 and "pi05.gguf" in r.stderr and "sha256" in r.stderr
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
