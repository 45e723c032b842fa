"""Per-stage GPU floors (vla_edge.bench.gpu_floors) on the tiny pack: FLOPs against a count made
independently from the config, bytes against the file's own tensor sizes, and no floor for a GPU
whose peaks are not known (rather than a guessed one)."""

from __future__ import annotations

import pytest

from vla_edge.bench.gpu_floors import gpu_peaks, stage_floors, stage_work
from vla_edge.packs.gguf_io import GGUFFile
from vla_edge.packs.pack import Pack


@pytest.fixture(scope="module")
def tiny(tiny_pack_dir):
    pack = Pack.open(tiny_pack_dir, check="size")
    return pack.config, GGUFFile(pack.weights_path).tensor_infos()


def test_prefix_flops_match_a_count_from_the_config(tiny):
    cfg, infos = tiny
    m = cfg.llm
    n_prefix = 2 * cfg.vision.num_patches + 7
    q, kv = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
    qkv = m.hidden_size * (q + 2 * kv)
    rest = q * m.hidden_size + 3 * m.hidden_size * m.intermediate_size
    expected = 2.0 * n_prefix * (m.num_layers * qkv + (m.num_layers - 1) * rest)  # last layer: K/V only
    work = stage_work(cfg, infos, n_images=2, n_text_tokens=7, num_steps=10)
    assert work["prefix"]["flop"] == pytest.approx(expected)
    assert set(work) == {"vision", "prefix", "expert_total"}


def test_expert_bytes_scale_with_the_flow_steps_and_widening_never_shrinks(tiny):
    cfg, infos = tiny
    one, ten = (stage_work(cfg, infos, 1, 5, steps)["expert_total"] for steps in (1, 10))
    assert ten["weight_bytes"] == pytest.approx(10 * one["weight_bytes"])  # every step reads every expert matrix
    vision = sum(i.n_bytes for n, i in infos.items()
                 if n.startswith("v.blk.") and n.endswith(".weight") and len(i.shape) == 2)
    assert stage_work(cfg, infos, 1, 5, 1)["vision"]["weight_bytes"] >= vision
    widened = stage_work(cfg, infos, 1, 5, 10, widened_to_f16=True)
    assert all(widened[s]["weight_bytes"] >= w["weight_bytes"]
               for s, w in stage_work(cfg, infos, 1, 5, 10).items())


def test_floors_and_fractions(tiny):
    cfg, infos = tiny
    work = stage_work(cfg, infos, 2, 20, 10)
    floors = stage_floors(work, {"vision": 2.0, "prefix": 3.0, "expert_total": 5.0}, "NVIDIA H200")
    bandwidth, flops = gpu_peaks("NVIDIA H200")
    for stage, f in floors.items():
        assert f["bandwidth_floor_ms"] == pytest.approx(1e3 * work[stage]["weight_bytes"] / bandwidth)
        assert f["tensor_core_floor_ms"] == pytest.approx(1e3 * work[stage]["flop"] / flops)
        floor = max(f["bandwidth_floor_ms"], f["tensor_core_floor_ms"])
        assert f["fraction_of_floor"] == pytest.approx(floor / f["measured_ms"])
    assert stage_floors(work, {}, "NVIDIA H200")["prefix"]["fraction_of_floor"] is None
    assert stage_floors(work, {"prefix": 1.0}, "NVIDIA GeForce RTX 4090") is None
    assert stage_floors(work, {"prefix": 1.0}, "NVIDIA H100 PCIe") is None
