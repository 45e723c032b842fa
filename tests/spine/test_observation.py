"""Every malformed observation is refused with the field, the expectation and what was given."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge import ObservationError, Observation, load_policy


def _obs(rng: np.random.Generator, **overrides) -> Observation:
    fields = dict(
        cameras={"base": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
                 "wrist": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
        state=rng.uniform(-0.2, 0.2, 6).astype(np.float32),
        prompt="open the drawer",
    )
    fields.update(overrides)
    return Observation(**fields)


@pytest.fixture(scope="module")
def policy(tiny_pack_dir):
    return load_policy(tiny_pack_dir, seed=1)


@pytest.mark.parametrize(
    "override, field, fragment",
    [
        ({"state": np.array([0.1, np.nan, 0, 0, 0, 0], np.float32)}, "state", "non-finite"),
        ({"state": np.array([0.1, np.inf, 0, 0, 0, 0], np.float32)}, "state", "non-finite"),
        ({"state": np.zeros(7, np.float32) + 0.3}, "state", "length 6"),
        ({"state": np.ones((6, 1), np.float32)}, "state", "1-D float"),
        ({"state": np.arange(6)}, "state", "1-D float"),
        ({"prompt": "   "}, "prompt", "non-empty"),
        ({"prompt": None}, "prompt", "non-empty"),
        ({"cameras": {"wrist": np.zeros((8, 8, 3), np.uint8) + 7}}, "cameras.base", "missing"),
        ({"cameras": {"base": np.ones((10, 10, 3), np.float32)}}, "cameras.base", "uint8"),
        ({"cameras": {"base": np.ones((10, 10), np.uint8)}}, "cameras.base", "HxWx3"),
        ({"cameras": {"base": np.ones((10, 10, 4), np.uint8)}}, "cameras.base", "HxWx3"),
        ({"prompt": "word " * 80}, "prompt", "at most 64 tokens"),
    ],
)
def test_bad_observation_is_refused_with_field(policy, override, field, fragment):
    rng = np.random.default_rng()
    with pytest.raises(ObservationError) as info:
        policy.infer(_obs(rng, **override))
    assert info.value.field == field
    assert fragment in str(info.value)


def test_bad_noise_is_refused(policy):
    rng = np.random.default_rng()
    with pytest.raises(ObservationError, match="noise"):
        policy.infer(_obs(rng), noise=np.ones((3, 3), np.float32))


def test_optional_camera_may_be_absent_and_changes_the_result(policy):
    rng = np.random.default_rng()
    obs = _obs(rng)
    noise = rng.standard_normal(policy.noise_shape).astype(np.float32)
    both = policy.infer(obs, noise=noise).actions
    base_only = policy.infer(_obs(rng, cameras={"base": obs.cameras["base"]}, state=obs.state), noise=noise).actions
    assert both.shape == base_only.shape == (10, 6)
    assert not np.allclose(both, base_only)


def test_chunk_carries_units_period_and_stage_latency(policy):
    rng = np.random.default_rng()
    chunk = policy.infer(_obs(rng))
    assert chunk.names == policy.info.action_names and len(chunk.units) == chunk.action_dim == 6
    assert chunk.control_period_s == pytest.approx(0.05)
    for stage in ("preprocess", "vision", "prefix", "expert_total", "postprocess", "total"):
        assert chunk.latency_ms[stage] >= 0.0
    assert chunk.time_of(2) == pytest.approx(chunk.timestamp + 0.1)


def test_seeded_policy_is_reproducible_and_fresh_noise_differs(tiny_pack_dir):
    rng = np.random.default_rng()
    obs = _obs(rng)
    a = load_policy(tiny_pack_dir, seed=7)
    first = a.infer(obs).actions
    second = a.infer(obs).actions
    a.reset()
    assert np.array_equal(a.infer(obs).actions, first)
    assert not np.allclose(first, second)
