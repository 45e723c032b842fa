"""Pre/post-processing: image resize-with-pad, quantile (un)normalisation, state tokens, prompt."""

from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm

from vla_edge.families.pi05.images import resize_with_pad, to_model_range
from vla_edge.families.pi05.prompt import PromptTokenizer, discretize_state
from vla_edge.packs.norm_stats import Stats
from vla_edge.packs.pack import Pack


def test_resize_with_pad_keeps_aspect_and_pads_black():
    rng = np.random.default_rng()
    img = rng.integers(1, 256, (120, 240, 3), dtype=np.uint8)  # no zero pixels of its own
    out = resize_with_pad(img, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # 240x120 -> 224x112, centred: 56 black rows above and below
    assert np.all(out[:56] == 0) and np.all(out[-56:] == 0)
    assert np.all(out[56:168].max(axis=2) > 0)


def test_resize_is_identity_at_model_size_and_range_maps_to_unit_interval():
    rng = np.random.default_rng()
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert resize_with_pad(img, 224) is img
    x = to_model_range(img)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose((x + 1) / 2 * 255, img, atol=1e-4)


def test_quantile_normalisation_round_trip_and_endpoints():
    rng = np.random.default_rng()
    q01 = rng.uniform(-2, 0, 9)
    q99 = q01 + rng.uniform(0.1, 3, 9)
    stats = Stats(mean=(q01 + q99) / 2, std=q99 - q01, q01=q01, q99=q99)
    x = rng.uniform(q01, q99, size=(50, 9))
    np.testing.assert_allclose(stats.unnormalize(stats.normalize(x)), x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.normalize(q01[None]), -1.0, atol=1e-5)
    np.testing.assert_allclose(stats.normalize(q99[None]), 1.0, atol=1e-4)
    # robot action dims are a prefix of the stats' dims
    np.testing.assert_allclose(stats.normalize(x[:, :4]), stats.normalize(x)[:, :4], rtol=1e-6)


def test_state_discretisation_matches_openpi_formula_inside_range():
    rng = np.random.default_rng()
    s = rng.uniform(-1, 1, 1000)
    expected = np.digitize(s, bins=np.linspace(-1, 1, 257)[:-1]) - 1  # openpi PaligemmaTokenizer
    assert np.array_equal(discretize_state(s), expected)
    assert discretize_state(np.array([-5.0, 5.0])).tolist() == [0, 255]  # clipped, never -1/256


def test_prompt_template_and_tokens(tiny_pack_dir):
    pack = Pack.open(tiny_pack_dir)
    tok = PromptTokenizer(pack.tokenizer_path, 64, discrete_state=True, bos_id=2)
    state = np.array([-1.0, 0.0, 0.999])
    ids = tok.encode("  pick_up the\ncube ", state)
    assert ids[0] == 2 and ids.dtype == np.int32
    sp = spm.SentencePieceProcessor(model_file=str(pack.tokenizer_path))  # decode with the Python library
    assert sp.decode(ids[1:].tolist()) == "Task: pick up the cube, State: 0 128 255;\nAction: "
    plain = PromptTokenizer(pack.tokenizer_path, 64, discrete_state=False, bos_id=2)
    assert sp.decode(plain.encode("open drawer", None)[1:].tolist()) == "open drawer\n"


def test_postprocess_crops_unnormalises_and_applies_delta_mask(tiny_pack_dir):
    pack = Pack.open(tiny_pack_dir)
    rng = np.random.default_rng()
    model_actions = rng.uniform(-1, 1, (10, 32)).astype(np.float32)
    from vla_edge import Observation

    obs = Observation(cameras={}, state=rng.uniform(-1, 1, 6).astype(np.float32), prompt="x")
    out = pack.family.postprocess(pack, model_actions, obs)
    expected = pack.norm_stats.actions.unnormalize(model_actions[:, :6].astype(np.float64))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    mask = [True] * 5 + [False]
    space = pack.manifest.action_space.model_copy(update={"delta_mask": mask})
    pack.manifest = pack.manifest.model_copy(update={"action_space": space})
    delta = pack.family.postprocess(pack, model_actions, obs)
    np.testing.assert_allclose(delta[:, :5], expected[:, :5] + obs.state[:5], rtol=1e-5)
    np.testing.assert_allclose(delta[:, 5], expected[:, 5], rtol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (3, 500), (500, 3), (224, 225)])
def test_resize_handles_extreme_aspect(size):
    rng = np.random.default_rng()
    out = resize_with_pad(rng.integers(0, 256, size + (3,), dtype=np.uint8), 224)
    assert out.shape == (224, 224, 3)
