"""The LIBERO simulator process: a clear error naming the install command when it is absent,
and (where it is installed) the real environment stepping, mapped and deterministic.

The real-simulator tests need the environment `vla-edge eval --setup-sim` builds (or
$VLA_EDGE_LIBERO_PYTHON); without it they skip and say that command.
"""

from __future__ import annotations

import numpy as np
import pytest
from cli_runner import run_cli

from vla_edge.eval import conventions as C
from vla_edge.eval.observation import state_vector, to_observation
from vla_edge.eval.sim_setup import PYTHON_ENV_VAR, SETUP_COMMAND, SimulatorUnavailableError, simulator_python


def test_missing_simulator_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    monkeypatch.setenv("VLA_EDGE_CACHE_DIR", str(tmp_path))  # no environment built here
    with pytest.raises(SimulatorUnavailableError, match=SETUP_COMMAND):
        simulator_python()
    with pytest.raises(SimulatorUnavailableError, match="does not exist"):
        simulator_python(tmp_path / "nope" / "python")


def test_cli_without_simulator_exits_2_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    monkeypatch.setenv("VLA_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    done = run_cli("eval", "--pack", str(tmp_path / "p"), "--suite", "libero_spatial", "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert SETUP_COMMAND in done.stderr and "MuJoCo < 4" in done.stderr
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.fixture(scope="module")
def libero():
    try:
        python = simulator_python()
    except SimulatorUnavailableError:
        pytest.skip(f"LIBERO simulator not installed: run `{SETUP_COMMAND}` (or set ${PYTHON_ENV_VAR})")
    from vla_edge.eval.sim_env import LiberoProcess

    with LiberoProcess(python) as env:
        yield env


def _roll(env, actions, init_index=0, seed=7):
    raw = env.reset("libero_spatial", 0, init_index, seed, C.ENV_RESOLUTION)
    states, done = [state_vector(raw)], False
    for a in actions:
        step = env.step(a)
        states.append(state_vector(step.raw))
        done = done or step.done
    return np.array(states), step.raw, done


def test_real_libero_steps_maps_and_repeats(libero):
    tasks = libero.tasks("libero_spatial")
    assert len(tasks) == 10 and all(t.init_states == 50 for t in tasks)
    rng = np.random.default_rng()
    actions = [np.concatenate([rng.uniform(-0.5, 0.5, 6), [-1.0]]) for _ in range(6)]
    states, raw, done = _roll(libero, actions)
    assert not done
    assert raw["agentview_image"].shape == (256, 256, 3) and raw["agentview_image"].std() > 5  # rendered, not blank
    obs = to_observation(raw, tasks[0].language, 0.0)
    obs.validate((C.AGENTVIEW,), 8)
    np.testing.assert_allclose(obs.state[:3], raw["robot0_eef_pos"], rtol=1e-6)
    assert np.linalg.norm(states[-1][:3] - states[0][:3]) > 1e-3  # the arm moved under the OSC deltas
    again, _, _ = _roll(libero, actions)
    np.testing.assert_array_equal(states, again)  # same instance, seed and actions: identical episode
    other, _, _ = _roll(libero, actions, init_index=1)
    assert not np.array_equal(states[0], other[0]) or not np.array_equal(states, other)
