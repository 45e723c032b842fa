"""Reports of real `vla-edge run` directories (demo pack, ur3-sim in fast mode): the numbers the
report recomputes from the logs agree with the counters the run loop kept itself (summary.json),
and with what the simulator did."""

from __future__ import annotations

import numpy as np
import pytest
from fast_sim import UR3_SIM_FAST_YAML

from vla_edge.report import Thresholds, build_report
from vla_edge.run.config import LoopConfig
from vla_edge.run.session import RunRequest, execute, prepare


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("report-runs")
    cfg = base / "robot.yaml"
    cfg.write_text(UR3_SIM_FAST_YAML)
    out = {}
    for mode in ("shadow", "live"):
        req = RunRequest(robot_config=cfg, duration_s=1.5, live=mode == "live", run_dir=base / mode, seed=4,
                         loop=LoopConfig(simulated_latency_s=0.08))
        outcome = execute(prepare(req))
        report, data = build_report([base / mode], Thresholds())
        out[mode] = (outcome.summary, report["runs"][0], data[0])
    return out


@pytest.mark.parametrize("mode", ["shadow", "live"])
def test_log_derived_numbers_agree_with_the_loop_counters(runs, mode):
    summary, entry, _ = runs[mode]
    assert entry["mode"] == mode
    assert entry["timing"]["ticks"] == summary["ticks"]
    assert entry["coverage"]["ticks_held"] == summary["ticks_held"]
    assert entry["coverage"]["ticks_with_target"] == summary["ticks"] - summary["ticks_without_target"]
    expected = {k: v for k, v in summary["interventions"].items() if k != "missing_target"}
    assert entry["safety"]["interventions_by_code"] == expected
    chunks = entry["timing"]["chunks"]
    assert chunks["received"] == summary["chunks"]["received"] and chunks["rejected"] == summary["chunks"]["rejected"]
    assert chunks["latency_ms"]["p50"] == pytest.approx(summary["inference_latency_ms"]["p50"], rel=1e-6)
    assert chunks["age_at_arrival_ms"]["max"] == pytest.approx(summary["chunk_age_at_arrival_ms"]["max"], rel=1e-6)
    deltas = [d for d in entry["safety"]["max_abs_filter_delta"].values() if d is not None]
    assert max(deltas) == pytest.approx(summary["max_abs_filter_delta"], abs=1e-6)


@pytest.mark.parametrize("mode", ["shadow", "live"])
def test_the_filter_kept_its_limits_in_a_real_run(runs, mode):
    _, entry, _ = runs[mode]
    checks = {c["name"]: c for c in entry["checks"]}
    assert checks["filter_velocity"]["passed"] and checks["filter_acceleration"]["passed"]
    assert 0 < checks["filter_velocity"]["value"] <= 1.01


def test_live_sim_tracks_what_was_sent_within_one_tick_of_motion(runs):
    """The fast sim reaches each streamed command by the next tick, so measured joints trail the
    sent command by one tick's motion: at most the velocity limit times the period."""
    _, entry, data = runs["live"]
    sent = entry["tracking"]["sent_vs_actual"]
    assert entry["tracking"]["arm_moved"] and sent is not None
    v_limit = np.asarray(data.config["robot"]["limits"]["velocity"])
    for joint, limit in zip(data.joints, v_limit):
        assert sent["per_joint"][joint]["max"] <= limit * data.control_period_s * 1.01 + 1e-6


def test_shadow_sim_arm_does_not_move_so_tracking_is_not_judged(runs):
    _, entry, _ = runs["shadow"]
    assert entry["tracking"]["arm_moved"] is False
    assert next(c for c in entry["checks"] if c["name"] == "tracking_p95_rad")["passed"] is None
