"""The degrade policy in a real run: ur3-sim in fast mode (sim time is the clock), the demo pack,
and a governor whose one sensor is scripted nominal -> throttled -> critical -> cool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_runner import run_cli  # noqa: E402
from fast_sim import UR3_SIM_FAST_YAML  # noqa: E402
from health_fakes import ScriptedMonitor  # noqa: E402

from vla_edge.health.config import parse_health_config  # noqa: E402
from vla_edge.health.governor import HealthGovernor  # noqa: E402
from vla_edge.run.config import LoopConfig  # noqa: E402
from vla_edge.run.session import RunRequest, execute, prepare  # noqa: E402

HEALTH = {"sample_period_s": 0.05, "recover_hold_s": 0.5, "critical": {"resume_wait_s": 5.0}}
# 88 C: throttled at 1.0 s; 97 C: critical at 2.0 s; 72 C from 2.8 s is below every threshold but
# not below warm - hysteresis (70 C), so critical holds; 60 C from 3.1 s: nominal after 0.5 s calm.
SCRIPT = [(0.0, 50.0), (1.0, 88.0), (2.0, 97.0), (2.8, 72.0), (3.1, 60.0)]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _new_chunks(ticks: list[dict], t0: float, t1: float) -> set[int]:
    before = {t["chunk"] for t in ticks if t["t"] < t0}
    return {t["chunk"] for t in ticks if t0 <= t["t"] < t1 and t["chunk"] is not None} - before


def test_fast_sim_run_throttles_stops_in_critical_and_resumes_after_hysteresis(tmp_path, tiny_pack_dir):
    cfg = tmp_path / "robot.yaml"
    cfg.write_text(UR3_SIM_FAST_YAML)
    # A short-chunk pack (0.45 s) on the reference target: a chunk runs out well inside the critical phase.
    req = RunRequest(robot_config=cfg, duration_s=4.5, live=True, run_dir=tmp_path / "run", seed=4,
                     pack=str(tiny_pack_dir), target="reference",
                     loop=LoopConfig(simulated_latency_s=0.08), health=HEALTH)
    prepared = prepare(req)
    assert prepared.settings.critical_wait_s == 5.0  # from health.critical.resume_wait_s
    gov = {}

    def scripted(loop):
        mon = ScriptedMonitor(loop.clock.now, SCRIPT)
        gov["g"] = loop.health = HealthGovernor([mon], parse_health_config(HEALTH), clock=loop.clock.now, background=False)

    outcome = execute(prepared, loop_hook=scripted)
    run = tmp_path / "run"
    events, ticks = _read(run / "events.jsonl"), _read(run / "ticks.jsonl")
    assert outcome.reason == "duration"

    # Every transition is logged with its cause, at the scripted times (sampled every 0.05 s).
    health = [e for e in events if e["event"] == "health"]
    assert [e["state"] for e in health] == ["throttled", "critical", "nominal"]
    assert "soc-thermal 88.0 C >= throttled 85.0 C" in health[0]["reason"]
    assert "soc-thermal 97.0 C >= critical 95.0 C" in health[1]["reason"]
    assert "recovered" in health[2]["reason"]
    t_thr, t_crit, t_nom = (e["t"] for e in health)
    assert t_thr == pytest.approx(1.0, abs=0.06) and t_crit == pytest.approx(2.0, abs=0.06)
    # Resumes only after hysteresis: not when 72 C came (2.8 s), but 0.5 s after 60 C (3.1 s).
    assert t_nom == pytest.approx(3.6, abs=0.06)
    assert [tr.to_state for tr in gov["g"].transitions] == ["throttled", "critical", "nominal"]

    # Throttled: half velocity limit and half the inference rate.
    scales = {s: {t["velocity_scale"] for t in ticks if t["health"] == s} for s in ("nominal", "throttled", "critical")}
    assert scales == {"nominal": {1.0}, "throttled": {0.5}, "critical": {0.25}}
    nominal_rate = len(_new_chunks(ticks, 0.0, 1.0)) / 1.0
    throttled_rate = len(_new_chunks(ticks, 1.1, 2.0)) / 0.9
    assert nominal_rate >= 4 and throttled_rate <= 0.6 * nominal_rate

    # Critical: the current chunk runs out, the arm stops, no new chunk until nominal.
    kinds = [e["event"] for e in events]
    assert kinds.index("finishing_segment") > kinds.index("health")
    hold = next(e for e in events if e["event"] == "health_hold")
    recovered = next(e for e in events if e["event"] == "health_recovered")
    assert t_crit < hold["t"] < t_nom <= recovered["t"] + 1e-9
    assert _new_chunks(ticks, t_crit + 0.01, t_nom) == set()
    stopped = [t for t in ticks if hold["t"] <= t["t"] < t_nom]
    assert stopped and all(t["filter"] == "stopped" and not t["sent"] for t in stopped)
    # Back to nominal: new chunks are taken and the arm moves again.
    after = [t for t in ticks if t["t"] > t_nom]
    assert _new_chunks(ticks, t_nom, 4.5) and sum(t["sent"] for t in after) > 50

    metrics = outcome.summary["metrics"]
    assert set(metrics["health_state_s"]) == {"nominal", "throttled", "critical"}
    assert metrics["health_state_s"]["critical"] == pytest.approx(t_nom - t_crit, abs=0.02)
    assert metrics["throttle_events"] == 2
    assert len(_read(run / "metrics.jsonl")) == 5  # 1 s windows over 4.5 s
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["health"]["provider"]["provider"] == "health governor"


def test_a_bad_health_section_is_refused_before_anything_moves(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("robot: ur3-sim\nhealth: {critical: {velocity_scale: 0}}\n")
    r = run_cli("run", "--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--duration", "1")
    assert r.returncode == 2
    assert "health.critical.velocity_scale" in r.stderr
    assert not (tmp_path / "run").exists()
