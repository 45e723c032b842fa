"""benchmarks/gpu_shape_churn.py dry-run on the CPU core (the GPU machine runs it for real): shapes
coming back in turn, the way a robot's prompt length varies, with per-shape graph markers turned
on (VLA_EDGE_SHAPE_MARKERS=1, as off the CPU). Every shape's chunks must be bit-identical whenever
the shape comes back, and equal the per-step expert graph's chunks to float32 rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.native
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_shape_churn.py"


def test_shapes_in_turn_give_identical_chunks_each_time_they_come_back(tiny_pack_dir, tmp_path):
    out = tmp_path / "churn.json"
    env = {**os.environ, "VLA_EDGE_SHAPE_MARKERS": "1"}
    subprocess.run([sys.executable, str(SCRIPT), "--pack", str(tiny_pack_dir), "--target", "x86",
                    "--options", "expert_graph=chunk", "--compare-options", "expert_graph=step",
                    "--shapes", "2x40,1x40,2x47", "--repeat", "2", "--rounds", "2", "--out", str(out)],
                   check=True, env=env, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert len(result["calls"]) == 3 * 2 * 2
    assert set(result["errors"]) == {"2x40", "1x40", "2x47"}
    for shape, err in result["errors"].items():
        assert err["identical_across_calls"], shape
        assert err["rel_l2_vs_compare"] <= 1e-6, (shape, err)
    assert result["first_after_switch_ms_median"] > 0 and result["repeated_shape_ms_median"] > 0
