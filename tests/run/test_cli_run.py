"""`vla-edge run` as a user runs it: subprocess, real exit codes, run directory on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "robots"))
from cli_runner import run_cli  # noqa: E402
from ur_emulator import free_loopback_host  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shadow_run_on_ur3_sim_with_demo_pack_writes_a_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli("run", "--target", "reference", "--robot", "ur3-sim", "--duration", "2", "--run-dir", str(run_dir),
                "--seed", "1", timeout=240)
    assert r.returncode == 0, r.stderr
    assert "SHADOW MODE" in r.stderr
    assert "SHADOW t=" in r.stderr and "infer_p50=" in r.stderr  # the status line
    ticks = read_jsonl(run_dir / "ticks.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    # 2 s at 125 Hz; a loaded host may skip ticks (counted as overruns) but not most of them.
    assert 150 <= len(ticks) <= 251 and summary["ticks"] == len(ticks)
    assert summary["end_reason"] == "duration" and summary["shadow"] is True
    assert summary["commands_sent"] == 0 and not any(t["sent"] for t in ticks)
    assert summary["chunks"]["received"] >= 1  # the policy ran inside the loop (plus the warm-up)
    assert set(ticks[0]) >= {"t", "commanded", "filtered", "actual", "interventions", "tick_ms", "health"}
    assert len(ticks[0]["actual"]) == 6
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["mode"] == "shadow"
    assert sorted(cfg["mapping"]["robot_joints"]) == sorted(cfg["policy"]["action_names"])
    assert cfg["robot"]["name"] == "ur3-sim" and cfg["target"] == "reference"
    assert summary["cameras"]["base"]["frames"] >= 2
    assert f"vla-edge report {run_dir}" in r.stderr  # where to go next


def test_shadow_run_on_the_x86_target(tmp_path):
    from vla_edge.targets.registry import target_status

    ok, why = target_status().get("x86", (False, "not registered"))
    if not ok:
        pytest.skip(f"x86 target unavailable here: {why}")
    run_dir = tmp_path / "run"
    r = run_cli("run", "--target", "x86", "--robot", "ur3-sim", "--duration", "2", "--run-dir", str(run_dir),
                timeout=240)
    assert r.returncode == 0, r.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["chunks"]["received"] >= 1 and summary["commands_sent"] == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["target"] == "x86"


def _robot_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "robot.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "args_fn, expect",
    [
        (lambda tmp: ["--robot", "ur5-sim"], "unknown robot 'ur5-sim'"),
        (lambda tmp: ["--robot", "ur3-sim", "--duration", "0"], "--duration"),
        (lambda tmp: ["--robot", "ur3-sim", "--run-dir", str(_robot_file(tmp, "not a run"))], "not an empty directory"),
        (lambda tmp: ["--robot-config", str(_robot_file(tmp, "robot: ur3-sim\nlimits:\n  velocityy: [1, 1, 1, 1, 1, 1]\n"))],
         "velocityy"),
        (lambda tmp: ["--robot-config", str(_robot_file(
            tmp, "robot: ur3-sim\nlimits:\n  velocity: [9.0, 0.5, 0.5, 0.5, 0.5, 0.5]\n"))],
         "exceeds the arm's hardware limit"),
        (lambda tmp: ["--robot-config", str(_robot_file(tmp, "robot: ur3-sim\ncameras: [front]\n"))],
         "camera 'base'"),
        (lambda tmp: ["--robot", "ur3-sim", "--camera", "base=/dev/video97"], "camera 'base'"),
        (lambda tmp: ["--robot-config", str(_robot_file(
            tmp, f"robot: ur3\nconnection: {{host: {free_loopback_host()}, connect_timeout_s: 0.3}}\n")),
            "--camera", "base=synthetic"],
         "is unreachable"),
    ],
    ids=["unknown-robot", "zero-duration", "run-dir-taken", "unknown-key", "above-hardware-limit", "camera-missing", "camera-device", "unreachable"],
)
def test_bad_input_is_a_clear_error_before_anything_moves(tmp_path, args_fn, expect):
    run_dir = tmp_path / "run"
    args = args_fn(tmp_path)
    if "--duration" not in args:
        args += ["--duration", "1"]
    if "--run-dir" not in args:
        args += ["--run-dir", str(run_dir)]
    r = run_cli("run", *args, "--live", "--yes", timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert expect in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (run_dir / "ticks.jsonl").exists()  # refused before the run (and the motion path) started


def test_live_without_terminal_or_yes_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vla_edge.cli.main", "run", "--robot", "ur3-sim", "--live",
                        "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env=os.environ.copy(), timeout=60)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert not (tmp_path / "run").exists()


def test_ctrl_c_is_a_controlled_stop_with_exit_code_130(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vla_edge.cli.main", "run", "--robot", "ur3-sim", "--duration", "60",
                             "--run-dir", str(run_dir), "--camera", "base=synthetic", "--camera", "wrist=synthetic"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ticks = run_dir / "ticks.jsonl"
            if ticks.exists() and ticks.stat().st_size > 0:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end_reason"] == "interrupted" and summary["ticks"] > 0
    assert read_jsonl(run_dir / "events.jsonl")[-1]["event"] == "end"


def test_run_file_with_relative_robot_config_in_fast_sim(tmp_path):
    (tmp_path / "cell.yaml").write_text("robot: ur3-sim\nconnection: {realtime: false, render: \"off\"}\n")
    (tmp_path / "run.yaml").write_text(
        "robot_config: cell.yaml\nduration_s: 0.8\nprompt: stack the blocks\n"
        "cameras: {base: synthetic}\nloop: {simulated_latency_s: 0.05, replan_s: 0.2}\n")
    run_dir = tmp_path / "run"
    r = run_cli("run", "--config", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir), "--seed", "0", timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["prompt"] == "stack the blocks" and cfg["loop"]["clock"] == "SimStepClock"
    assert cfg["cameras"] == {"base": {"kind": "synthetic", "spec": "synthetic"}}
    assert "wrist" in cfg["cameras_skipped"]  # optional, and the sim renders nothing with render: off
    assert len(read_jsonl(run_dir / "ticks.jsonl")) == 100  # 0.8 s of sim time at 125 Hz, exactly


def test_run_file_unknown_key_is_named(tmp_path):
    (tmp_path / "run.yaml").write_text("robot: ur3-sim\nloop: {replan: 0.2}\n")
    r = run_cli("run", "--config", str(tmp_path / "run.yaml"), timeout=60)
    assert r.returncode == 2 and "loop.replan" in r.stderr, r.stderr
