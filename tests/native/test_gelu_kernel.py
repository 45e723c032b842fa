"""The CPU graph's vectorised GELU (native/src/gelu_kernels.cpp) against float64, on fresh random
inputs. Tolerance: |error| <= 3e-7 * max(1, |x|) — float32 rounding of a formula whose result is
~x for large x; the same formula evaluated by NumPy in float32 is measured at ~1.2e-7 on this scale
and the kernel at ~1.1e-7."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.native
native = pytest.importorskip("vla_edge._native")


def gelu64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def test_matches_float64_on_random_inputs():
    rng = np.random.default_rng()
    # both branches of its tanh (|argument| below / above 0.625), saturation, and sizes that leave
    # a vector remainder
    x = np.concatenate([rng.standard_normal(400_001) * 4, rng.uniform(-30, 30, 100_003),
                        rng.uniform(-0.8, 0.8, 50_001)]).astype(np.float32)
    y = native.gelu_tanh(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    err = np.abs(y.astype(np.float64) - gelu64(x)) / np.maximum(1.0, np.abs(x.astype(np.float64)))
    assert err.max() <= 3e-7, f"max scaled error {err.max():.3g} at x = {x[np.argmax(err)]}"


def test_special_values_follow_the_formula():
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 1e30, np.inf, np.nan], np.float32)
    y = native.gelu_tanh(x)
    np.testing.assert_array_equal(y[:7], np.array([0.0, -0.0, 5e-31, -5e-31, 88.0, -0.0, 1e30], np.float32))
    assert y[7] == np.inf and np.isnan(y[8])
    big = native.gelu_tanh(np.array([-np.inf], np.float32))
    with np.errstate(invalid="ignore"):
        assert np.isnan(big[0]) == np.isnan(gelu64(np.array([-np.inf]))[0])  # -inf * 0, as the formula
