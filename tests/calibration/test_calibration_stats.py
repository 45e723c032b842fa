"""Activation statistics against a direct NumPy computation on fresh random inputs.

Tolerances: sums of squares are accumulated in float64 from float32 activations, compared with
rtol 1e-9 to float64 NumPy on the same rows (only summation order differs). Percentiles come
from log2 bins 1/8 octave wide, so the estimate lies in [p, p * 2**(1/8)] of the exact one."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.calibration.calibrate import collect, sample_noise
from vla_edge.calibration.observations import samples_from
from vla_edge.calibration.stats import BINS_PER_OCTAVE, ActivationCollector, TensorStats, fit_width, spread_summary
from vla_edge.packs.pack import Pack
from vla_edge.targets.reference import ops


def test_tensor_stats_match_numpy_on_random_rows():
    rng = np.random.default_rng()
    batches = [(rng.standard_normal((int(rng.integers(3, 40)), 24)) * rng.uniform(0.01, 50, 24)).astype(np.float32)
               for _ in range(6)]
    stats = TensorStats.empty(24, 3)
    for i, b in enumerate(batches):
        stats.add(b, step=i % 3)
    for step in range(3):
        rows = np.concatenate(batches[step::3]).astype(np.float64)
        np.testing.assert_allclose(stats.sum_sq[step], (rows ** 2).sum(axis=0), rtol=1e-9)
        assert stats.count[step] == len(rows)
        assert stats.absmax[step] == pytest.approx(np.abs(rows).max(), rel=1e-7)
        assert stats.hist[step].sum() == rows.size
    every = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(stats.importance(), (every ** 2).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.absmax_channel, np.abs(every).max(axis=0), rtol=1e-7)
    for q in (50.0, 99.0, 99.9):
        exact = np.percentile(np.abs(every), q, method="inverted_cdf")
        est = stats.percentile(q)
        assert exact * (1 - 1e-6) <= est <= exact * 2 ** (1 / BINS_PER_OCTAVE) * (1 + 1e-6), (q, exact, est)


def test_fit_width_pads_and_crops_like_the_padded_product():
    x = np.random.default_rng().standard_normal((2, 5, 6)).astype(np.float32)
    assert fit_width(x, 8).shape == (10, 8) and not fit_width(x, 8)[:, 6:].any()
    np.testing.assert_array_equal(fit_width(x, 4), x.reshape(10, 6)[:, :4])


def test_reference_statistics_match_inputs_computed_directly(tiny_pack_dir, obs_dir):
    """Inputs known without the model: the noise enters action_in at flow step 0; the time MLP
    sees the sinusoidal embedding of t at every step; the patch embedding sees image patches."""
    pack = Pack.open(tiny_pack_dir, check="size")
    cfg = pack.config
    samples = samples_from(obs_dir)[:3]
    observations = [(s.id, s.load()) for s in samples]
    collector = collect(pack, observations, seed=5)
    pre = pack.family.preprocessor(pack)
    noises = [sample_noise(s.id, 5, pre.noise_shape()).astype(np.float64) for s in samples]

    action_in = collector.tensors["action.action_in.weight"]
    assert action_in.steps == cfg.num_flow_steps
    np.testing.assert_allclose(action_in.sum_sq[0], sum((n ** 2).sum(axis=0) for n in noises), rtol=1e-9)
    assert list(action_in.count) == [cfg.action_horizon * len(samples)] * cfg.num_flow_steps

    time_in = collector.tensors["action.timestep_mlp.in.weight"]
    for step in range(cfg.num_flow_steps):
        emb = ops.sinusoidal_time(1.0 - step / cfg.num_flow_steps, cfg.expert.hidden_size,
                                  cfg.time_min_period, cfg.time_max_period).astype(np.float64)
        np.testing.assert_allclose(time_in.sum_sq[step], len(samples) * emb ** 2, rtol=1e-6, atol=1e-12)

    v, patch = cfg.vision, collector.tensors["v.patch_embd.weight"]
    p, g = v.patch_size, v.image_size // v.patch_size
    expected = np.zeros(3 * p * p)
    for sid, obs in observations:
        for image in pre(obs, sample_noise(sid, 5, pre.noise_shape())).images:
            patches = image.reshape(g, p, g, p, 3).transpose(0, 2, 4, 1, 3).reshape(g * g, -1)
            expected += (patches.astype(np.float64) ** 2).sum(axis=0)
    np.testing.assert_allclose(patch.sum_sq[0], expected, rtol=1e-9)

    # every LLM matmul sees each prefix token once per observation
    prefix_rows = collector.tensors["pali.blk.0.attn_q.weight"].count[0]
    assert all(collector.tensors[f"pali.blk.{i}.{t}.weight"].count[0] == prefix_rows
               for i in range(cfg.llm.num_layers) for t in ("attn_q", "attn_o", "ffn_up", "ffn_down"))


def test_collector_refuses_a_flow_loop_of_another_length():
    collector = ActivationCollector({"action.x": 4}, expert_steps=10)
    with pytest.raises(ValueError, match="5 steps"):
        collector("action.x", np.ones((2, 4), np.float32), (0, 5))


def test_importance_spread_finds_a_loud_channel_and_is_near_one_without():
    """Equal channels give a spread near 1 (the largest of 64 sample means of x^2 over 20,000 rows
    lies within ~5% of 1); one channel 10x louder gives 100 n / (n - 1 + 100) of the mean, within
    the same sampling error; the summary names the loud tensor."""
    rng = np.random.default_rng()
    n = 64
    flat, loud = TensorStats.empty(n, 1), TensorStats.empty(n, 2)
    rows = rng.standard_normal((20_000, n)).astype(np.float32)
    flat.add(rows)
    scaled = rows.copy()
    channel = int(rng.integers(n))
    scaled[:, channel] *= 10
    loud.add(scaled[:10_000], step=0)
    loud.add(scaled[10_000:], step=1)
    assert 1.0 <= flat.importance_spread() <= 1.06
    assert loud.importance_spread() == pytest.approx(100 * n / (n - 1 + 100), rel=0.06)
    summary = spread_summary({"a.weight": flat, "b.weight": loud, "unused.weight": TensorStats.empty(n, 1)})
    assert summary["tensors"] == 2 and summary["max_tensor"] == "b.weight"
    assert summary["max"] == pytest.approx(loud.importance_spread())
    assert spread_summary({}) == {}
