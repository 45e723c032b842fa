"""Per-tick cost of the safety filter: the C++ core against the pure-Python filter it replaced.

    python benchmarks/safety_step.py [--ticks N] [--repeats N] [--json OUT]

The baseline is the Python filter as it was before the move to C++ (commit 464bca9), loaded from
git history into a temporary package under /tmp (never into the repo), so both are measured in
the same process on the same streams. For each robot, one seeded stream of moving targets (a new
goal every ~0.3 s, some far enough to hit velocity, TCP-speed and range limits) is put through:
  python_filter  the pre-move Python SafetyFilter.step (shadow)
  wrapped_core   today's SafetyFilter.step: Python wrapper + C++ core (what the run loop calls)
  bare_core      vla_edge._safety.FilterCore.step alone (the C ABI's code, plus pybind's call cost)
and checks that all three emit the same commands (bitwise) and codes. Prints us/tick (median of
the repeats) and the ratio python_filter / other; writes benchmarks/results/safety_step.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "464bca9"
HOME = {
    "ur3": np.array([0.0, -1.571, 1.571, -1.571, -1.571, 0.0]),
    "arx5": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03]),
    "arx5-bimanual": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03] * 2),
}


def load_baseline(tmp: Path):
    """The pre-move filter as package vla_edge.robots._bench_old_safety (files from git, in /tmp)."""
    import vla_edge.robots as robots_pkg

    pkg = tmp / "_bench_old_safety"
    pkg.mkdir()
    for name in ("__init__", "filter", "limits", "motion"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{BASELINE_COMMIT}:robots/safety/{name}.py"],
                              check=True, capture_output=True, text=True).stdout
        (pkg / f"{name}.py").write_text(text)
    robots_pkg.__path__.append(str(tmp))
    return importlib.import_module("vla_edge.robots._bench_old_safety.filter").SafetyFilter


class _Robot:
    def __init__(self, config, q0):
        from vla_edge.robots.base import RobotCapabilities

        self.capabilities = RobotCapabilities(joint_names=tuple(config.joints), control_rate_hz=config.control_rate_hz,
                                              gripper_indices=config.gripper_indices, arms=len(config.kinematics.arms))
        self.q = q0.copy()


def stream(config, lim, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    q0 = HOME[config.name]
    goals, goal = [], q0.copy()
    for k in range(n):
        if k % 40 == 0:
            goal = np.clip(q0 + rng.normal(0.0, 0.4, q0.shape), lim.hardware_min, lim.hardware_max)
        goals.append(goal.copy())
    return goals


def run(make_step, config, goals) -> tuple[float, list]:
    from vla_edge.robots.base import JointState

    dt = config.control_period_s
    q = HOME[config.name].copy()
    step = make_step()
    out, t = [], 0.0
    start = time.perf_counter()
    for goal in goals:
        t += dt
        command, codes = step(goal, t, JointState(q=q, qd=np.zeros_like(q), timestamp=t), t)
        if command is not None:
            q = command
        out.append((None if command is None else command.tobytes(), codes))
    return (time.perf_counter() - start) / len(goals) * 1e6, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "safety_step.json")
    args = ap.parse_args()
    from vla_edge import _safety
    from vla_edge.robots.config import load_robot_config
    from vla_edge.robots.safety import SafetyFilter
    from vla_edge.robots.safety.native import filter_spec

    results = {"baseline_commit": BASELINE_COMMIT, "ticks": args.ticks, "repeats": args.repeats,
               "machine": platform.machine(), "python": sys.version.split()[0], "robots": {}}
    with tempfile.TemporaryDirectory() as tmp:
        OldFilter = load_baseline(Path(tmp))
        for name in HOME:
            config = load_robot_config(name)
            clock = {"t": 0.0}

            def filter_step(cls):
                def make():
                    filt = cls(_Robot(config, HOME[name]), config, shadow=True, clock=lambda: clock["t"])

                    def step(goal, t, state, now):
                        clock["t"] = now
                        r = filt.step(goal, t, state)
                        return r.command, r.codes
                    return step
                return make

            def bare_make():
                core = _safety.FilterCore(filter_spec(config), True)

                def step(goal, t, state, now):
                    command, _, _, _, notes, _ = core.step(goal, False, t, state.q, False, state.timestamp, 1.0, now)
                    return command, tuple(n[0] for n in notes)
                return step

            variants = {"python_filter": filter_step(OldFilter), "wrapped_core": filter_step(SafetyFilter),
                        "bare_core": bare_make}
            goals = stream(config, SafetyFilter(_Robot(config, HOME[name]), config, shadow=True).limits, args.ticks, 7)
            times: dict[str, list[float]] = {k: [] for k in variants}
            decisions = {}
            for _ in range(args.repeats):  # interleaved so machine drift hits all alike
                for key, make in variants.items():
                    us, out = run(make, config, goals)
                    times[key].append(us)
                    decisions[key] = out
            same = decisions["python_filter"] == decisions["wrapped_core"] == decisions["bare_core"]
            med = {k: float(np.median(v)) for k, v in times.items()}
            codes = sorted({c for _, cs in decisions["bare_core"] for c in cs})
            row = {"us_per_tick_median": med, "us_per_tick_all": times, "identical_decisions": same, "codes_seen": codes,
                   "speedup_vs_python_filter": {k: med["python_filter"] / med[k] for k in ("wrapped_core", "bare_core")}}
            results["robots"][name] = row
            print(f"{name:14s} python_filter {med['python_filter']:8.1f} us  wrapped_core {med['wrapped_core']:7.1f} us "
                  f"(x{row['speedup_vs_python_filter']['wrapped_core']:.1f})  bare_core {med['bare_core']:6.1f} us "
                  f"(x{row['speedup_vs_python_filter']['bare_core']:.1f})  identical={same}  codes={codes}")
            if not same:
                raise SystemExit(f"{name}: decisions differ between the implementations")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
