"""Several observations in one forward pass on the native core ("many robots per GPU"): each
batched chunk equals the chunk of a pass of its own, on fresh random inputs that differ per
observation (cameras present, prompt length, images, state, noise), for both expert graphs and
both attention forms (flash attention is the default).

Tolerance: the batch runs the same float32 operations per token as a single pass (products over
all observations' tokens at once, attention per observation), so only the summation order inside
ggml's kernels may differ: rel-L2 <= 1e-6 against the single pass, and the x86 target's 1e-4
against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge import ObservationError, load_policy
from vla_edge.packs.golden import random_observation
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.native

PROMPTS = ["pick up the red cube", "open the top drawer and put the bowl inside it, then close it", "stack"]
CAMERAS = [("base", "wrist"), ("base",), ("base", "wrist")]


@pytest.fixture(scope="module", params=[("step", "matmul"), ("chunk", "matmul"), ("chunk", "flash")],
                ids=lambda p: "-".join(p))
def x86(request, tiny_pack_dir):
    expert_graph, attention = request.param
    return load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph=expert_graph, attention=attention)


@pytest.fixture(scope="module")
def reference(tiny_pack_dir):
    return load_policy(tiny_pack_dir, target="reference")


def _requests(policy, rng, n):
    """n observations that differ in every input, each with its own noise."""
    out = []
    for i in range(n):
        obs = random_observation(policy.pack, rng, prompt=PROMPTS[i % len(PROMPTS)])
        obs.cameras = {k: v for k, v in obs.cameras.items() if k in CAMERAS[i % len(CAMERAS)]}
        out.append((obs, rng.standard_normal(policy.noise_shape).astype(np.float32)))
    return out


@pytest.mark.parametrize("batch", [2, 3])
def test_batched_chunks_equal_single_passes(x86, reference, batch):
    rng = np.random.default_rng()
    requests = _requests(x86, rng, batch)
    assert x86.batches
    chunks = x86.infer_batch(requests)
    assert len(chunks) == batch
    for (obs, noise), chunk in zip(requests, chunks):
        alone = x86.infer(obs, noise=noise).actions
        assert rel_l2(chunk.actions, alone) <= 1e-6, f"rel-L2 {rel_l2(chunk.actions, alone):.2e}"
        assert np.abs(chunk.actions).max() > 0.1  # a real chunk, not zeros
        assert rel_l2(chunk.actions, reference.infer(obs, noise=noise).actions) <= 1e-4
        assert {"vision", "prefix", "expert_total"} <= set(chunk.latency_ms)
    # the observations really differ, so a mix-up between them could not pass the checks above
    assert rel_l2(chunks[0].actions, chunks[1].actions) > 1e-2


def test_a_batch_is_one_graph_per_stage_and_grows_the_cache_once(x86):
    """The structural half of "one pass": a new batch shape builds exactly one vision, one
    prefix and one expert graph (not one per observation); the same shapes again build none."""
    rng = np.random.default_rng()
    requests = _requests(x86, rng, 3)
    runtime = x86._backend.runtime
    x86.infer_batch(requests)
    builds = runtime.graph_builds
    fresh_noise = [(obs, rng.standard_normal(x86.noise_shape).astype(np.float32)) for obs, _ in requests]
    x86.infer_batch(fresh_noise)  # same observations (pi0.5's prompt holds the state): same shapes
    assert runtime.graph_builds == builds
    x86.infer_batch(requests[:2])
    assert runtime.graph_builds == builds + 3
    obs, noise = requests[2]  # back to one observation after a bigger batch: still its own chunk
    single = x86.infer(obs, noise=noise).actions
    assert rel_l2(single, x86.infer_batch([(obs, noise)])[0].actions) <= 1e-6


def test_a_bad_observation_gets_its_error_in_its_place_and_the_others_are_served(x86):
    rng = np.random.default_rng()
    requests = _requests(x86, rng, 3)
    bad_obs, bad_noise = requests[1]
    bad_obs.cameras = {"base": np.zeros((8, 8), np.uint8)}
    requests[1] = (bad_obs, bad_noise)
    requests.append((requests[0][0], np.zeros((2, 2), np.float32)))  # wrong noise shape
    out = x86.infer_batch(requests)
    assert isinstance(out[1], ObservationError) and "base" in str(out[1])
    assert isinstance(out[3], ObservationError) and "noise" in str(out[3])
    for i in (0, 2):
        obs, noise = requests[i]
        assert rel_l2(out[i].actions, x86.infer(obs, noise=noise).actions) <= 1e-6
    assert all(isinstance(r, ObservationError) for r in x86.infer_batch([requests[1], requests[3]]))


def test_the_native_batch_call_names_the_bad_observation(x86):
    runtime = x86._backend.runtime
    rng = np.random.default_rng()
    s, h, a = runtime.image_size, runtime.horizon, runtime.action_dim
    images = [rng.uniform(-1, 1, (1, s, s, 3)).astype(np.float32) for _ in range(2)]
    tokens = [np.array([2, 5, 9], np.int32)] * 2
    noise = [rng.standard_normal((h, a)).astype(np.float32), np.zeros((h + 1, a), np.float32)]
    with pytest.raises(ValueError, match="observation 1: noise must be"):
        runtime.sample_actions_batch(images, tokens, noise, 3)
    with pytest.raises(ValueError, match="observation 0: need 1 to 3 images"):
        runtime.sample_actions_batch([images[0][:0], images[1]], tokens, noise[:1] * 2, 3)
    with pytest.raises(ValueError, match="one images, tokens and noise array per observation"):
        runtime.sample_actions_batch(images, tokens[:1], noise[:1] * 2, 3)


def test_a_target_that_cannot_batch_refuses_infer_batch(reference):
    from vla_edge import TargetUnavailableError

    assert not reference.batches
    with pytest.raises(TargetUnavailableError, match="target 'reference' cannot run several observations"):
        reference.infer_batch([])
