"""`vla-edge bench` writes every number it prints, with same-run baselines; timings themselves are
not asserted (they belong to benchmarks, not tests)."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_cli
from vla_edge.families.pi05.config import TINY
from vla_edge.families.pi05.tensors import tensor_specs
from vla_edge.families.pi05.workload import matmul_workload

pytestmark = pytest.mark.native
pytest.importorskip("vla_edge._native")


def test_bench_json_has_stages_ratios_and_goals(tiny_pack_dir, tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--pack", str(tiny_pack_dir), "--target", "x86", "--threads", "2", "--runs", "2",
                "--warmup", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    stages = d["latency_ms"]
    assert {"preprocess", "vision", "prefix", "expert_step_0", "expert_step_9", "expert_total", "postprocess",
            "total"} <= set(stages)
    assert all(s["p50"] <= s["p95"] <= s["max"] for s in stages.values())
    assert d["runs"] == 2 and d["target"]["backend"]["threads"] == 2
    assert d["memory"]["peak_rss_bytes"] > 0 and d["memory"]["peak_rss_over_pack"] > 0
    assert d["reference"]["speedup_total_p50"] > 0  # tiny pack: the reference runs in the same process
    assert d["ceiling"]["shapes"] and d["ceiling"]["pipeline_over_ceiling"] > 0
    goals = {g["goal"]: g["met"] for g in d["goals"]}
    assert goals["no allocation in the steady state"] is True  # graphs/buffers reused after warm-up
    assert len(goals) == 3
    assert "vs reference target" in r.stdout and "vs ggml matmul" in r.stdout


def test_bench_refuses_bad_run_counts(tiny_pack_dir):
    r = run_cli("bench", "--pack", str(tiny_pack_dir), "--runs", "0")
    assert r.returncode == 2 and "--runs" in r.stderr


def test_workload_covers_every_matrix_the_graph_multiplies():
    specs = tensor_specs(TINY)
    uses = matmul_workload(TINY, n_images=2, n_text_tokens=20, num_steps=10)
    used = {u.tensor for u in uses}
    matrices = {n for n, s in specs.items() if s.is_matrix}
    assert used <= matrices
    last = f"pali.blk.{TINY.llm.num_layers - 1}."
    skipped = {last + t + ".weight" for t in ("attn_o", "ffn_gate", "ffn_up", "ffn_down")}  # only K/V needed
    assert matrices - used == {"embed.weight", "v.position_embd.weight"} | skipped  # lookup and add
