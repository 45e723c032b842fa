"""`pack import --from checkpoint`, then `pack quantize` (the README's route to GGUF recipes for a
PyTorch checkpoint), then `pack verify`.

- An fp32 openpi checkpoint imports as the very numbers of the tiny pack and ggml's quantisers
  are deterministic, so quantising the import gives, tensor for tensor, the bytes that quantising
  the tiny pack directly gives (exact).
- Quantised vs the imported pack it came from, reference target, action-chunk rel-L2:
  q8_0 <= 5e-3, q4_k_m <= 5e-2. Measured on the tiny pack: q8_0 6e-4..9e-4 (8 bits and a scale
  per 32 weights: round-trip error <= 1% per tensor, tests/native/test_quantize_packs.py), q4_k_m
  5e-3..7e-3. The bounds leave 5x headroom for fresh random inputs and still fail on a wrong
  scale, layout or tensor (rel-L2 of order 1); rel-L2 > 1e-6 shows the weights really changed.
- A bf16 LeRobot checkpoint imports as F16; its q8_0 is held to the same bound against that F16
  pack (the quantiser reads the F16 values exactly).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoint_layout import write_checkpoint
from cli_runner import run_cli
from import_checks import run_import
from vla_edge import load_policy
from vla_edge.packs.compare import compare_policies
from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.pack import Pack

pytestmark = pytest.mark.native
pytest.importorskip("vla_edge._native", reason="pack quantize uses ggml's quantisers from the native module")

BOUND = {"q8_0": 5e-3, "q4_k_m": 5e-2}


@pytest.fixture(scope="module")
def imported_f32(tiny_pack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The openpi fp32 checkpoint of the tiny pack, imported (F32, with a golden output)."""
    work = tmp_path_factory.mktemp("ckpt-f32")
    r = run_import("checkpoint", write_checkpoint(tiny_pack_dir, work / "openpi"), work / "pack")
    assert r.returncode == 0, r.stderr
    return work / "pack"


def quantize_and_verify(src: Path, recipe: str, out: Path) -> Pack:
    """`pack quantize SRC --recipe R --out OUT` and `pack verify OUT`, both through the CLI."""
    r = run_cli("pack", "quantize", str(src), "--recipe", recipe, "--out", str(out))
    assert r.returncode == 0, r.stderr
    v = run_cli("pack", "verify", str(out), "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    findings = json.loads(v.stdout)["findings"]
    assert json.loads(v.stdout)["ok"] and all(f["level"] != "error" for f in findings)
    pack = Pack.open(out)
    assert pack.manifest.quantization.recipe == recipe
    parent = Pack.open(src).manifest
    assert pack.manifest.source["quantized_from"] == parent.name
    assert pack.manifest.source["parent_weights_sha256"] == sha256_file(src / parent.files.weights.path)
    if parent.files.golden is not None:  # the golden was refreshed, and verify reproduced it
        assert any(f["where"].startswith("golden") and f["level"] == "ok" for f in findings)
    return pack


def assert_acts_close(quantized: Pack, parent: Path, recipe: str, n_obs: int) -> None:
    report = compare_policies(load_policy(quantized, target="reference"), load_policy(parent, target="reference"),
                              n_obs=n_obs)
    print(f"{recipe} vs imported parent: rel-L2 max {report['rel_l2']['max']:.2e}")
    assert 1e-6 < report["rel_l2"]["max"] <= BOUND[recipe], report


@pytest.mark.parametrize("recipe,n_obs", [("q8_0", 2), ("q4_k_m", 1)])
def test_quantized_import_is_the_quantized_model(imported_f32, tiny_pack_dir, tmp_path, recipe, n_obs):
    from vla_edge.packs.quantize import quantize_pack

    pack = quantize_and_verify(imported_f32, recipe, tmp_path / recipe)
    direct = GGUFFile(quantize_pack(tiny_pack_dir, recipe, tmp_path / "direct", golden=False) / "pi05.gguf")
    got = GGUFFile(pack.weights_path)
    assert got.tensor_infos() == direct.tensor_infos()
    for name in direct.tensor_infos():
        assert np.array_equal(np.asarray(got.raw(name)[0]), np.asarray(direct.raw(name)[0])), name
    assert_acts_close(pack, imported_f32, recipe, n_obs)


def test_bf16_checkpoint_imported_as_f16_then_q8_0(tiny_pack_dir, tmp_path):
    src = write_checkpoint(tiny_pack_dir, tmp_path / "lerobot", layout="lerobot", dtype=torch.bfloat16)
    r = run_import("checkpoint", src, tmp_path / "f16", "--no-golden")
    assert r.returncode == 0, r.stderr
    assert Pack.open(tmp_path / "f16").manifest.quantization.recipe == "f16"
    pack = quantize_and_verify(tmp_path / "f16", "q8_0", tmp_path / "q8_0")
    infos = GGUFFile(pack.weights_path).tensor_infos()
    assert infos["pali.blk.0.attn_q.weight"].ggml_type == "Q8_0"
    assert_acts_close(pack, tmp_path / "f16", "q8_0", n_obs=1)
