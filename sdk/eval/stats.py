"""Binomial confidence intervals for success rates, and paired comparisons of two packs that ran
the same episodes.

Why these: success over n episodes is binomial, and with n = 50 per task and rates near 0 or 1
the normal ("Wald") interval is wrong in exactly the region that matters (it collapses to zero
width at 0% and 100%). Wilson's score interval keeps its coverage there. Two packs on the same
seeds are paired: only the discordant episodes (one succeeded, the other failed) carry
information about the difference, so the difference gets Newcombe's paired interval (his method
10, built from the two Wilson intervals and the correlation of the pairs), and the exact
McNemar test (binomial on the discordant pairs) says whether it could be chance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Sequence


def z_for(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} not in 0..{n}")
    z = z_for(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 or n successes the bound is exactly 0 or 1 (centre - half leaves ~1e-17 of rounding,
    # which a report would print as a non-zero lower bound)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class PairedComparison:
    n: int
    rate_a: float
    rate_b: float
    difference: float  # rate_b - rate_a
    ci_low: float
    ci_high: float
    only_a: int  # episodes A solved and B did not
    only_b: int
    mcnemar_p: float  # exact two-sided

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each discordant pair is a fair coin."""
    m = only_a + only_b
    if m == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return min(1.0, 2.0 * tail)


def paired(a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95) -> PairedComparison:
    """Compare outcomes of the same episodes under pack A and pack B (difference = B - A)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    neither = n - both - only_a - only_b
    if n == 0:
        return PairedComparison(0, 0.0, 0.0, 0.0, -1.0, 1.0, 0, 0, 1.0)
    sa, sb = both + only_a, both + only_b
    pa, pb = sa / n, sb / n
    la, ua = wilson(sa, n, confidence)
    lb, ub = wilson(sb, n, confidence)
    # Newcombe (1998) method 10: phi is the correlation of the paired outcomes (0 when undefined).
    margins = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins > 0 else 0.0
    d = pb - pa
    dl = math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    du = math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return PairedComparison(n, pa, pb, d, max(-1.0, d - dl), min(1.0, d + du), only_a, only_b,
                            mcnemar_exact(only_a, only_b))
