"""The demo pack driving ur3-sim in fast mode (sim time is the clock): live motion in the
simulator equals the filtered commands, and a run is reproducible tick for tick."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fast_sim import UR3_SIM_FAST_YAML

from vla_edge.run.config import LoopConfig
from vla_edge.run.session import RunRequest, execute, prepare


def _run(tmp_path: Path, name: str, live: bool, seed: int = 4):
    cfg = tmp_path / "robot.yaml"
    cfg.write_text(UR3_SIM_FAST_YAML)
    req = RunRequest(robot_config=cfg, duration_s=1.5, live=live, run_dir=tmp_path / name, seed=seed,
                     loop=LoopConfig(simulated_latency_s=0.08))
    prepared = prepare(req)
    port = {}
    outcome = execute(prepared, loop_hook=lambda loop: port.setdefault("robot", loop.robot))
    ticks = [json.loads(line) for line in (tmp_path / name / "ticks.jsonl").read_text().splitlines()]
    return outcome, ticks, port["robot"]


def test_live_fast_sim_moves_the_sim_arm_exactly_along_filtered_commands(tmp_path):
    outcome, ticks, robot = _run(tmp_path, "live", live=True)
    assert outcome.reason == "duration"
    assert len(ticks) == round(1.5 * 125)
    sent = [t for t in ticks if t["sent"]]
    assert len(sent) > 100 and outcome.summary["commands_sent"] == len(sent)
    # The sim tracks feasible streamed targets exactly, so the state read on the next tick is the
    # command sent on this one (to the log's 7-decimal rounding).
    by_i = {t["i"]: t for t in ticks}
    pairs = [(t["filtered"], by_i[t["i"] + 1]["actual"]) for t in sent if t["i"] + 1 in by_i]
    for cmd, actual in pairs:
        np.testing.assert_allclose(actual, cmd, atol=1e-6)
    moved = np.abs(np.array(ticks[-1]["actual"]) - np.array(ticks[0]["actual"])).max()
    assert moved > 1e-3  # the arm did move (the demo pack's actions are not all zero)


def test_fast_sim_run_is_reproducible_and_shadow_never_moves(tmp_path):
    _, a, _ = _run(tmp_path, "a", live=True)
    _, b, _ = _run(tmp_path, "b", live=True)
    strip = lambda ts: [{k: v for k, v in t.items() if k not in ("tick_ms", "late_ms")} for t in ts]  # noqa: E731
    assert strip(a) == strip(b)
    outcome, shadow, _ = _run(tmp_path, "s", live=False)
    assert outcome.summary["commands_sent"] == 0
    assert all(t["actual"] == shadow[0]["actual"] for t in shadow)  # nothing moved
    assert sum(t["filtered"] is not None for t in shadow) > 100  # the filter ran all along


def test_live_fast_sim_bimanual_arx5_with_a_pack_for_it(tmp_path):
    from vla_edge.families.pi05.synth import synth_pack

    pack = synth_pack(tmp_path / "pack", size="tiny", seed=1, robot="arx5-bimanual-sim")
    cfg = tmp_path / "robot.yaml"
    cfg.write_text("robot: arx5-bimanual-sim\nconnection: {realtime: false, render: auto, image_size: [32, 32]}\n")
    req = RunRequest(robot_config=cfg, pack=str(pack), duration_s=1.0, live=True, run_dir=tmp_path / "run", seed=2,
                     loop=LoopConfig(simulated_latency_s=0.05))
    outcome = execute(prepare(req))
    ticks = [json.loads(line) for line in (tmp_path / "run" / "ticks.jsonl").read_text().splitlines()]
    assert outcome.reason == "duration" and len(ticks) == 100  # ARX5 runs at 100 Hz
    assert len(ticks[0]["actual"]) == 14
    assert set(outcome.summary["cameras"]) == {"base", "left_wrist", "right_wrist"}
    # The random demo policy asks for joints outside the ARX5's range on many ticks: the filter
    # refuses those (the arm brakes and holds; the refused target is never sent) and the loop
    # resumes on the next valid target.
    refused = [t for t in ticks if "out_of_range_target" in {i["code"] for i in t["interventions"]}]
    for t in refused:
        assert t["held"] and t["filtered"] != t["commanded"]
    assert outcome.summary["commands_sent"] == sum(t["sent"] for t in ticks)
    hw_min = np.array([-3.14, -0.05, -0.1, -1.6, -1.57, -2.0, 0.0] * 2)
    hw_max = np.array([2.618, 3.14, 3.24, 1.55, 1.57, 2.0, 0.088] * 2)
    for t in ticks:
        assert np.all(np.array(t["actual"]) >= hw_min - 1e-6) and np.all(np.array(t["actual"]) <= hw_max + 1e-6)
