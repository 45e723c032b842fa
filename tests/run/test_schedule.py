"""ActionSchedule against a per-joint np.interp reference on fresh random chunks."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.run.schedule import ActionSchedule

TOL = 1e-12  # float64 linear interpolation: only rounding differences
# Fresh inputs every session; printed on failure so a failing case can be replayed.
FRESH = int(np.random.SeedSequence().entropy % 2**32)


def random_chunk(rng, horizon=None, dof=None):
    horizon = horizon or int(rng.integers(2, 40))
    dof = dof or int(rng.integers(1, 14))
    rows = rng.normal(size=(horizon, dof)) * rng.uniform(0.01, 3.0)
    period = float(rng.uniform(0.005, 0.1))
    t0 = float(rng.uniform(0, 1e4))
    return rows, period, t0


def reference(rows, period, t0, t):
    times = t0 + period * np.arange(rows.shape[0])
    return np.array([np.interp(t, times, rows[:, j]) for j in range(rows.shape[1])])


@pytest.mark.parametrize("seed", range(20))
def test_interpolation_matches_reference_and_never_extrapolates(seed):
    rng = np.random.default_rng([seed, FRESH])
    rows, period, t0 = random_chunk(rng)
    s = ActionSchedule()
    assert s.update(rows, t0, period, now=t0).accepted
    span = period * (rows.shape[0] - 1)
    for t in t0 + rng.uniform(0, span, 50):
        np.testing.assert_allclose(s.target_at(t), reference(rows, period, t0, t), rtol=0, atol=TOL * 10,
                                   err_msg=f"FRESH={FRESH}")
    np.testing.assert_allclose(s.target_at(t0 + span), rows[-1], atol=TOL * 10)
    assert s.target_at(t0 + span + 1e-6) is None  # past the last row: hold, no extrapolation
    assert s.target_at(t0 + span + rng.uniform(0.001, 10)) is None


@pytest.mark.parametrize("seed", range(10))
def test_latency_compensation_drops_past_rows_and_joins_at_now(seed):
    rng = np.random.default_rng([seed, FRESH])
    rows, period, t0 = random_chunk(rng, horizon=int(rng.integers(5, 40)))
    latency = float(rng.uniform(0, period * (rows.shape[0] - 2)))
    now = t0 + latency
    s = ActionSchedule()
    result = s.update(rows, t0, period, now=now)
    assert result.accepted
    # Rows strictly before the one just preceding `now` are gone.
    assert result.dropped_rows == int(np.floor(latency / period + 1e-12))
    np.testing.assert_allclose(s.target_at(now), reference(rows, period, t0, now), atol=1e-10)
    assert s.target_at(now - period * 1.01) is None  # the dropped past is not replayed


def test_chunk_entirely_in_the_past_is_rejected_and_old_chunk_kept():
    rng = np.random.default_rng(7)
    rows, period, t0 = random_chunk(rng, horizon=10, dof=6)
    s = ActionSchedule()
    s.update(rows, t0, period, now=t0)
    stale = rng.normal(size=(10, 6))
    now = t0 + 0.5 * period
    result = s.update(stale, t0 - 20 * period, period, now=now)
    assert not result.accepted and result.dropped_rows == 10
    np.testing.assert_allclose(s.target_at(now), reference(rows, period, t0, now), atol=1e-10)


def test_switch_and_blend_between_chunks():
    rng = np.random.default_rng(11)
    a, period, t0 = random_chunk(rng, horizon=20, dof=5)
    b = rng.normal(size=(20, 5))
    t1 = t0 + 3.3 * period  # the second chunk's observation time
    now = t1 + 2.2 * period  # it arrives 2.2 rows late
    hard = ActionSchedule()
    hard.update(a, t0, period, now=t0)
    hard.update(b, t1, period, now=now)
    np.testing.assert_allclose(hard.target_at(now), reference(b, period, t1, now), atol=1e-10)
    blend_s = 4 * period
    soft = ActionSchedule(blend_s=blend_s)
    soft.update(a, t0, period, now=t0)
    soft.update(b, t1, period, now=now)
    for frac in rng.uniform(0, 1, 10):
        t = now + frac * blend_s
        s = (t - now) / blend_s
        w = s * s * (3.0 - 2.0 * s)  # smoothstep: no velocity step at either end of the fade
        expected = (1 - w) * reference(a, period, t0, t) + w * reference(b, period, t1, t)
        np.testing.assert_allclose(soft.target_at(t), expected, atol=1e-10)
    t_after = now + 1.5 * blend_s
    np.testing.assert_allclose(soft.target_at(t_after), reference(b, period, t1, t_after), atol=1e-10)


def test_clear_and_bad_chunks():
    s = ActionSchedule()
    assert s.target_at(0.0) is None
    assert not s.update(np.zeros((0, 3)), 0.0, 0.1, 0.0).accepted
    assert not s.update(np.ones((4, 3)), 0.0, 0.0, 0.0).accepted
    s.update(np.ones((4, 3)), 0.0, 0.1, 0.0)
    s.clear()
    assert s.target_at(0.1) is None
