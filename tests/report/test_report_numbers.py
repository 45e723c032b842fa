"""Report numbers against run directories whose answers are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest
from run_dir_writer import DT, SyntheticRun

from vla_edge.report import Thresholds, build_report

ROUNDING = 1e-4  # logs hold 7 decimals; velocities / accelerations recomputed from them wobble by this


def _one(run_dir, thresholds=Thresholds()):
    report, _ = build_report([run_dir], thresholds)
    return report["runs"][0]


def _check(entry, name):
    return next(c for c in entry["checks"] if c["name"] == name)


def test_coverage_interventions_tracking_and_timing_match_the_construction(tmp_path):
    spec = SyntheticRun(seed=11)
    entry = _one(spec.write(tmp_path / "run"))
    after_first = spec.ticks - spec.first_target
    gap_ticks = sum(end - start for start, end in spec.gaps)
    longest_gap = max(end - start for start, end in spec.gaps)

    cov = entry["coverage"]
    assert cov["ticks_with_target"] == after_first - gap_ticks
    assert cov["share_after_first_target"] == pytest.approx((after_first - gap_ticks) / after_first, abs=1e-12)
    assert cov["first_target_s"] == pytest.approx(spec.first_target * DT, abs=1e-6)
    assert cov["longest_gap_s"] == pytest.approx(longest_gap * DT, abs=1e-9)

    safety = entry["safety"]
    assert safety["interventions_by_code"] == {"velocity_limited": len(spec.intervention_ticks)}  # missing_target is coverage
    assert safety["intervention_share_of_target_ticks"] == pytest.approx(len(spec.intervention_ticks) / (after_first - gap_ticks))
    for share in safety["peak_velocity_share_of_limit"].values():
        assert share == pytest.approx(spec.ramp_share, abs=ROUNDING)
    for share in safety["peak_acceleration_share_of_limit"].values():
        assert share == pytest.approx(0.5, abs=10 * ROUNDING)  # the ramp accelerates at half the limit

    tracking = entry["tracking"]
    assert tracking["arm_moved"] and tracking["sent_vs_actual"] is None  # shadow: nothing was sent
    for err in tracking["policy_vs_actual"]["per_joint"].values():
        for stat in ("mean", "p95", "max"):
            assert err[stat] == pytest.approx(spec.offset, abs=2e-7)

    rng = np.random.default_rng(spec.seed)  # the writer's draws, in its order
    rng.choice([-1.0, 1.0], size=(spec.ticks, 2))
    latencies = rng.uniform(40, 90, 30)
    ages = latencies + rng.uniform(5, 15, 30)
    chunks = entry["timing"]["chunks"]
    assert chunks["received"] == 30 and chunks["rejected"] == 0
    assert chunks["latency_ms"]["p95"] == pytest.approx(np.percentile(latencies, 95))
    assert chunks["age_at_arrival_ms"]["max"] == pytest.approx(ages.max())
    assert 5 <= chunks["age_minus_latency_ms"]["p50"] <= 15
    assert chunks["rows_past_on_arrival"] == pytest.approx(1 / spec.horizon)
    assert entry["timing"]["chunk_duration_ms"] == pytest.approx(spec.horizon * spec.policy_period_s * 1e3)
    assert _check(entry, "chunk_age")["value"] == pytest.approx(np.percentile(ages, 95) / 500.0)


def test_checks_pass_on_a_good_trial_and_tracking_is_judged_only_with_a_threshold(tmp_path):
    run_dir = SyntheticRun(seed=3).write(tmp_path / "run")
    entry = _one(run_dir, Thresholds(min_coverage=0.9))
    results = {c["name"]: c["passed"] for c in entry["checks"]}
    assert results.pop("tracking_p95_rad") is None  # reported, not judged, without a threshold
    assert all(results.values()), entry["checks"]
    assert entry["verdict"].startswith("all evaluated checks passed")

    judged = _one(run_dir, Thresholds(min_coverage=0.9, max_tracking_error_rad=0.02))
    assert _check(judged, "tracking_p95_rad")["passed"] is False  # every error is 0.03 rad
    assert judged["verdict"] == "NOT READY: 1 check(s) failed (tracking_p95_rad)"
    assert _check(_one(run_dir, Thresholds(min_coverage=0.9, max_tracking_error_rad=0.04)), "tracking_p95_rad")["passed"]


def test_default_coverage_threshold_fails_a_trial_with_gaps(tmp_path):
    entry = _one(SyntheticRun(seed=5).write(tmp_path / "run"))  # 520 / 560 = 0.93 < 0.95
    assert _check(entry, "coverage")["passed"] is False


def test_a_filtered_step_beyond_the_velocity_limit_fails_the_filter_check(tmp_path):
    spec = SyntheticRun(seed=7, planted_jump=250)
    entry = _one(spec.write(tmp_path / "run"), Thresholds(min_coverage=0.9))
    check = _check(entry, "filter_velocity")
    assert check["passed"] is False
    assert check["value"] == pytest.approx(spec.ramp_share + 2.0, abs=ROUNDING)
    assert _check(entry, "filter_acceleration")["passed"] is False


def test_late_chunks_fail_the_chunk_age_check(tmp_path):
    latencies = np.random.default_rng(9).uniform(200, 260, 25)
    spec = SyntheticRun(seed=9, latencies_ms=latencies, ages_ms=latencies + 100.0)  # > half of a 500 ms chunk
    entry = _one(spec.write(tmp_path / "run"), Thresholds(min_coverage=0.9))
    assert _check(entry, "chunk_age")["passed"] is False
    assert _check(entry, "chunk_age")["value"] == pytest.approx(np.percentile(latencies + 100.0, 95) / 500.0)


def test_an_arm_that_did_not_move_is_not_compared(tmp_path):
    run_dir = SyntheticRun(seed=2).write(tmp_path / "run")
    records = [json.loads(line) for line in (run_dir / "ticks.jsonl").read_text().splitlines()]
    for r in records:
        r["actual"] = [0.25, -0.5]
    (run_dir / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    entry = _one(run_dir, Thresholds(max_tracking_error_rad=0.01))
    assert entry["tracking"]["arm_moved"] is False and entry["tracking"]["policy_vs_actual"] is None
    check = _check(entry, "tracking_p95_rad")
    assert check["passed"] is None and "did not move" in check["why"]


def test_a_run_in_which_the_policy_never_produced_a_target_fails_coverage(tmp_path):
    spec = SyntheticRun(seed=4, first_target=10_000)  # every chunk came too late to be used
    entry = _one(spec.write(tmp_path / "run"))
    check = _check(entry, "coverage")
    assert check["passed"] is False and check["value"] == 0.0
    assert entry["coverage"]["ticks_with_target"] == 0 and entry["coverage"]["first_target_s"] is None
    assert entry["coverage"]["longest_gap_s"] == pytest.approx(spec.ticks * DT)
    assert entry["verdict"].startswith("NOT READY")
