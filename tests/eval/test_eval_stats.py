"""Wilson and Newcombe paired intervals and the exact McNemar test, on fresh synthetic outcomes,
against direct computations written independently of the implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_edge.eval.stats import mcnemar_exact, paired, wilson, z_for


def _wilson_by_roots(s: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's interval is the set of p with (p_hat - p)^2 <= z^2 p (1 - p) / n: the roots of a quadratic."""
    p_hat = s / n
    a, b, c = 1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat
    roots = np.sort(np.roots([a, b, c]).real)
    return float(max(0.0, roots[0])), float(min(1.0, roots[1]))


def test_wilson_matches_the_quadratic_roots():
    rng = np.random.default_rng()
    z = z_for(0.95)
    assert abs(z - 1.959963984540054) < 1e-12
    for _ in range(200):
        n = int(rng.integers(1, 400))
        s = int(rng.integers(0, n + 1))
        np.testing.assert_allclose(wilson(s, n), _wilson_by_roots(s, n, z), atol=1e-9)
    assert wilson(0, 0) == (0.0, 1.0)
    for n in (1, 7, 10, 50):  # the closed ends are exact, not 1e-17 off
        assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0


def test_mcnemar_matches_enumeration():
    for only_a, only_b in [(0, 0), (3, 0), (5, 9), (12, 4), (1, 1)]:
        m = only_a + only_b
        observed = math.comb(m, only_a) / 2 ** m if m else 1.0
        # two-sided: total probability of outcomes no more likely than the observed one
        direct = sum(math.comb(m, k) / 2 ** m for k in range(m + 1) if math.comb(m, k) / 2 ** m <= observed + 1e-15) if m else 1.0
        assert mcnemar_exact(only_a, only_b) == pytest.approx(min(1.0, direct), abs=1e-12)


def _newcombe_direct(a: list[bool], b: list[bool], z: float) -> tuple[float, float]:
    """Newcombe (1998) method 10, written from the 2x2 table with p1 = rate of b, p2 = rate of a."""
    n = len(a)
    t = np.zeros((2, 2))
    for x, y in zip(a, b):
        t[int(not y), int(not x)] += 1  # rows: b succeeded?, cols: a succeeded?
    p1, p2 = t[0].sum() / n, t[:, 0].sum() / n
    l1, u1 = _wilson_by_roots(int(t[0].sum()), n, z)
    l2, u2 = _wilson_by_roots(int(t[:, 0].sum()), n, z)
    denom = t[0].sum() * t[1].sum() * t[:, 0].sum() * t[:, 1].sum()
    phi = (t[0, 0] * t[1, 1] - t[0, 1] * t[1, 0]) / math.sqrt(denom) if denom else 0.0
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return low, high


def test_paired_interval_matches_direct_computation_on_synthetic_outcomes():
    rng = np.random.default_rng()
    z = z_for(0.95)
    for _ in range(100):
        n = int(rng.integers(5, 200))
        a = list(rng.random(n) < rng.random())
        flip = rng.random(n) < rng.uniform(0, 0.4)
        b = [bool(x) != bool(f) for x, f in zip(a, flip)]
        got = paired(a, b)
        assert got.n == n and got.rate_a == pytest.approx(np.mean(a)) and got.rate_b == pytest.approx(np.mean(b))
        assert got.only_a == sum(x and not y for x, y in zip(a, b)) and got.only_b == sum(y and not x for x, y in zip(a, b))
        # atol 1e-8: with no discordant pair the direct bounds are exactly 0, ours 0 +- a few ulps of O(1) terms
        np.testing.assert_allclose((got.ci_low, got.ci_high), _newcombe_direct(a, b, z), atol=1e-8)
        assert got.ci_low <= got.difference <= got.ci_high


def test_paired_interval_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(2026)
    true_a, true_b, n, trials, covered = 0.8, 0.7, 50, 800, 0
    for _ in range(trials):
        u = rng.random(n)
        a = u < true_a
        b = (u < true_b) ^ (rng.random(n) < 0.05)  # strongly correlated pairs, as two packs on one seed
        c = paired(list(a), list(b))
        covered += c.ci_low <= (true_b - true_a) <= c.ci_high
    assert 0.92 <= covered / trials <= 0.995


def test_paired_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        paired([True], [True, False])
