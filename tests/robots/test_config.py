"""Robot configuration: shipped YAML, user overlays, and the errors bad input must produce."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vla_edge.errors import ConfigError, VlaEdgeError
from vla_edge.robots import registry
from vla_edge.robots.config import load_robot_config


def write(tmp_path: Path, text: str, name: str = "robot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("name", registry.list_robots())
def test_every_registered_robot_loads_with_limits_inside_hardware(name):
    cfg = load_robot_config(name)
    assert cfg.name == name
    hw, op = cfg.hardware_limits, cfg.limits
    assert all(o <= h for o, h in zip(op.velocity, hw.velocity))
    assert all(o <= h for o, h in zip(op.acceleration, hw.acceleration))
    assert op.tcp_speed <= hw.tcp_speed
    assert all(o <= 0.5 * h for o, h in zip(op.velocity, hw.velocity)), "defaults should be conservative"


def test_registry_names_and_drivers():
    assert set(registry.list_robots()) >= {"ur3", "ur3-sim", "arx5", "arx5-sim", "arx5-bimanual", "arx5-bimanual-sim"}
    assert load_robot_config("ur3-sim").driver == "ur3-sim"
    assert load_robot_config("arx5-bimanual").dof == 14
    assert load_robot_config("arx5-bimanual").gripper_indices == (6, 13)


def test_ur3_published_numbers():
    cfg = load_robot_config("ur3")
    assert cfg.hardware_limits.velocity == pytest.approx([3.1416] * 3 + [6.2832] * 3)
    assert cfg.hardware_limits.position_max == pytest.approx([6.2832] * 6)
    assert cfg.hardware_limits.tcp_speed == 1.0


def test_unknown_robot_lists_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        load_robot_config("ur5")
    assert "unknown robot 'ur5'" in str(exc.value) and "arx5-bimanual" in str(exc.value)


def test_overlay_tightens_limits_and_selects_ur3e(tmp_path):
    path = write(
        tmp_path,
        """
        robot: ur3
        limits:
          tcp_speed: 0.1
          velocity: [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
        kinematics:
          arms:
            - {joint_indices: [0, 1, 2, 3, 4, 5], preset: ur3e}
        connection: {host: 10.0.0.7}
        """,
    )
    cfg = load_robot_config(str(path))
    assert cfg.driver == "ur3" and cfg.limits.tcp_speed == 0.1 and cfg.limits.velocity[0] == 0.5
    assert cfg.limits.acceleration == load_robot_config("ur3").limits.acceleration  # untouched keys kept
    assert cfg.kinematics.arms[0].preset == "ur3e" and cfg.connection == {"host": "10.0.0.7"}


@pytest.mark.parametrize(
    "body, where, words",
    [
        ("limits:\n  velocityy: [1, 1, 1, 1, 1, 1]\n", "limits.velocityy", ["unknown key"]),
        ("colour: red\n", "colour", ["unknown key"]),
        ("workspace:\n  min: [0, 0, 0]\n  max: [1, 1, 1]\n  margin: 2\n", "workspace.margin", ["unknown key"]),
        ("limits:\n  velocity: [4.0, 0.5, 0.5, 0.5, 0.5, 0.5]\n", "limits.velocity[0]",
         ["4.0", "hardware limit 3.1416"]),
        ("limits:\n  tcp_speed: 2.5\n", "limits.tcp_speed", ["2.5", "hardware limit 1.0"]),
        ("limits:\n  acceleration: [1, 1, 1, 1, 1, 99]\n", "limits.acceleration[5]", ["99", "hardware limit 15.0"]),
        ("limits:\n  position_max: [7, 1, 1, 1, 1, 1]\n", "limits.position_max[0]", ["7", "6.2832"]),
        ("limits:\n  tcp_speed: fast\n", "limits.tcp_speed", ["number", "fast"]),
        ("limits:\n  velocity: [0.5, 0.5]\n", "limits.velocity", ["2 values", "expected one per joint"]),
        ("control_rate_hz: -5\n", "control_rate_hz", ["greater than 0"]),
        ("hardware_limits:\n  tcp_speed: 9\n", "hardware_limits", ["cannot be overridden"]),
        ("kinematics:\n  arms:\n    - {joint_indices: [0, 1, 2, 3, 4, 5], preset: ur9}\n", "", ["unknown kinematics preset 'ur9'"]),
        ("workspace:\n  min: [1, 0, 0]\n  max: [0, 1, 1]\n", "workspace", ["below max"]),
    ],
)
def test_bad_overlay_names_file_field_and_expectation(tmp_path, body, where, words):
    path = write(tmp_path, "robot: ur3\n" + body)
    with pytest.raises(ConfigError) as exc:
        load_robot_config(str(path))
    message = str(exc.value)
    assert str(path) in message
    assert where in message
    for word in words:
        assert word in message, message


def test_gripper_rate_above_hardware_is_rejected(tmp_path):
    path = write(tmp_path, "robot: arx5\ngrippers:\n  - {index: 6, range: [0.0, 0.08], max_rate: 0.5}\n")
    with pytest.raises(ConfigError, match=r"grippers\[0\]\.max_rate = 0.5 exceeds .* 0.1"):
        load_robot_config(str(path))


@pytest.mark.parametrize(
    "text, match",
    [
        ("limits: {tcp_speed: 0.1}\n", "robot: missing"),
        ("robot: ur7\n", "unknown robot 'ur7'"),
        ("robot: ur3\nlimits: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_malformed_files(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_robot_config(str(write(tmp_path, text)))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read robot config"):
        load_robot_config(str(tmp_path / "nope.yaml"))


def test_missing_driver_module_is_reported_not_raised_raw(monkeypatch):
    cfg = load_robot_config("ur3")

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(registry.importlib, "import_module", missing)
    with pytest.raises(VlaEdgeError, match="driver not available: vla_edge.robots.ur3.driver"):
        registry.create_robot(cfg, shadow=True)


def test_registry_and_configs_import_no_driver_dependencies():
    code = (
        "import sys; from vla_edge.robots.registry import list_robots; from vla_edge.robots.config import load_robot_config;"
        "[load_robot_config(n) for n in list_robots()];"
        "import vla_edge.robots.safety;"
        "heavy = [m for m in ('mujoco', 'rtde_control', 'rtde_receive', 'can') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env_path = [p for p in sys.path if p]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": ":".join(env_path)})
    assert out.returncode == 0, out.stdout + out.stderr
