"""The filter's C++ core as Python sees it: its forward kinematics against the Python FK (the
simulator's and the property tests' oracle), its limit derivation against the YAML, its refusal
of bad limits, and the wrapper failing closed when the core is missing."""

from __future__ import annotations

import numpy as np
import pytest
from safety_fakes import FakeRobot

from vla_edge.errors import ConfigError
from vla_edge.robots.config import load_robot_config, parse_robot_config
from vla_edge.robots.kinematics import RobotKinematics
from vla_edge.robots.safety import FilterLimits, SafetyError, SafetyFilter
from vla_edge.robots.safety import native as safety_native

ROBOTS = ["ur3", "arx5", "arx5-bimanual"]


@pytest.mark.parametrize("robot", ROBOTS)
def test_core_fk_matches_python_fk_on_random_configurations(robot):
    config = load_robot_config(robot)
    filt = SafetyFilter(FakeRobot(config, np.zeros(config.dof)), config, shadow=True)
    lim = filt.limits
    q = np.random.default_rng(11).uniform(lim.hardware_min, lim.hardware_max, size=(500, config.dof))
    expected = RobotKinematics(config.kinematics).tcp_positions(q)
    got = filt._checker.tcp(q)
    assert got.shape == expected.shape == (500, len(config.kinematics.arms), 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)  # metres; fp64 round-off only
    assert np.abs(expected).max() > 0.1  # real poses, not a degenerate case


def test_core_fk_with_explicit_tables_and_offsets_matches_python():
    data = load_robot_config("ur3").model_dump()
    data["kinematics"] = {"arms": [{
        "joint_indices": [0, 1, 2, 3, 4, 5],
        "dh": {"a": [0.0, -0.3, -0.25, 0.0, 0.0, 0.0], "alpha": [1.5708, 0.0, 0.0, 1.5708, -1.5708, 0.0],
               "d": [0.15, 0.0, 0.0, 0.11, 0.09, 0.08], "theta_offset": [0.1, -0.2, 0.3, 0.0, 0.05, -0.4]},
        "base_xyz": [0.1, -0.05, 0.02], "base_rpy": [0.1, 0.2, -0.3], "tool_xyz": [0.0, 0.01, 0.12],
    }]}
    data["workspace"] = {"min": [-2.0, -2.0, -2.0], "max": [2.0, 2.0, 2.0]}
    config = parse_robot_config(data, "test")
    filt = SafetyFilter(FakeRobot(config, np.zeros(6)), config, shadow=True)
    q = np.random.default_rng(3).uniform(-3.0, 3.0, size=(300, 6))
    np.testing.assert_allclose(filt._checker.tcp(q), RobotKinematics(config.kinematics).tcp_positions(q), atol=1e-12)


@pytest.mark.parametrize("robot", ROBOTS)
def test_derived_limits_follow_the_yaml_rules(robot):
    """Independent restatement of docs/safety.md's table: margin, grippers, max_step folding."""
    cfg = load_robot_config(robot)
    lim = FilterLimits.from_config(cfg)
    hw, op = cfg.hardware_limits, cfg.limits
    dt = 1.0 / cfg.control_rate_hz
    grippers = {g.index: g for g in cfg.grippers}
    for i in range(cfg.dof):
        lo = (op.position_min or hw.position_min)[i]
        hi = (op.position_max or hw.position_max)[i]
        vel = min(op.velocity[i], op.max_step[i] / dt) if op.max_step else op.velocity[i]
        if i in grippers:
            g = grippers[i]
            lo, hi, vel = max(lo, g.range[0]), min(hi, g.range[1]), min(vel, g.max_rate)
        else:
            lo, hi = lo + op.position_margin, hi - op.position_margin
        assert lim.position_min[i] == pytest.approx(lo, abs=1e-15) and lim.position_max[i] == pytest.approx(hi, abs=1e-15)
        assert lim.velocity[i] == pytest.approx(vel, rel=1e-15)
    assert lim.dt == pytest.approx(dt) and lim.tcp_speed == op.tcp_speed and lim.stale_after_s == cfg.stale_after_s
    np.testing.assert_array_equal(lim.hardware_min, hw.position_min)
    np.testing.assert_array_equal(lim.workspace_max, cfg.workspace.max)


def test_core_refuses_limits_beyond_the_hardware_even_when_the_config_is_bypassed():
    """The C ABI has no pydantic in front of it: the core checks what it is given."""
    spec = safety_native.filter_spec(load_robot_config("ur3"))
    spec.velocity = [10.0] * 6
    with pytest.raises(ValueError, match=r"limits.velocity\[0\].*exceeds the arm's hardware limit"):
        safety_native.load_core().derive_limits(spec)
    spec = safety_native.filter_spec(load_robot_config("ur3"))
    spec.arms = []
    with pytest.raises(ValueError, match="kinematics.arms"):
        safety_native.load_core().FilterCore(spec, False)


def test_filter_fails_closed_without_the_native_core(monkeypatch):
    def missing(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(safety_native.importlib, "import_module", missing)
    config = load_robot_config("ur3")
    robot = FakeRobot(config, np.zeros(6))
    with pytest.raises(SafetyError, match="vla_edge._safety is not available.*refusing to drive"):
        SafetyFilter(robot, config, shadow=False)
    assert robot.open_calls == 0  # no motion path was ever opened
    with pytest.raises(SafetyError, match="refusing"):
        FilterLimits.from_config(config)


def test_bad_shaped_inputs_are_holds_named_by_the_core():
    config = load_robot_config("ur3")
    robot = FakeRobot(config, np.array([0.0, -1.571, 1.571, -1.571, -1.571, 0.0]))
    state = robot.read_state(1.0)
    for bad, detail in ((np.zeros((2, 3)), "not a numeric vector"), (np.zeros(5), "has 5 values, expected 6")):
        filt = SafetyFilter(robot, config, shadow=True, clock=lambda: 1.0)
        r = filt.step(bad, 1.0, state)
        assert r.codes == ("bad_target",) and detail in r.interventions[0].detail and r.held
    with pytest.raises(ConfigError):
        SafetyFilter(FakeRobot(load_robot_config("arx5"), np.zeros(7)), config, shadow=True)
