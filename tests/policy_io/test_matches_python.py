"""vla_edge._policy_io (the C++ the C ABI runs) against the Python it replaced, on fresh random
inputs. Tolerances: resize-with-pad identical for landscape and square images of any size; for
portrait images at most 1 uint8 level on at most 25% of pixels (Pillow 13 runs the vertical pass
first for some portrait sizes, the C++ always horizontal first, as upstream Pillow does); the
quantile maps bit-identical (same float64 arithmetic, no FMA contraction); state bins, cleaned
prompts and token ids identical; sha256 identical to hashlib."""

from __future__ import annotations

import hashlib

import numpy as np
import python_oracle as oracle
import pytest

from vla_edge import _policy_io as io


@pytest.mark.parametrize("orientation", ["landscape", "square", "portrait"])
def test_resize_with_pad_matches_pil(orientation):
    rng = np.random.default_rng()
    for _ in range(40):
        a, b = sorted(int(v) for v in rng.integers(1, 1400, 2))
        h, w = {"landscape": (a, b), "square": (b, b), "portrait": (b, a)}[orientation]
        if (h, w) == (224, 224):
            continue
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = oracle.resize_with_pad(img, 224).astype(np.int16)
        got = io.resize_with_pad(img, 224).astype(np.int16)
        diff = np.abs(got - want)
        if orientation == "portrait":
            assert diff.max() <= 1 and (diff > 0).mean() <= 0.25, (h, w, diff.max(), (diff > 0).mean())
        else:
            assert diff.max() == 0, (h, w, diff.max(), (diff > 0).mean())


def test_common_camera_formats_resize_exactly_like_pil():
    rng = np.random.default_rng()
    for h, w in [(480, 640), (720, 1280), (1080, 1920), (240, 320), (480, 848), (96, 96), (100, 100), (300, 400)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(io.resize_with_pad(img, 224), oracle.resize_with_pad(img, 224)), (h, w)


def test_model_range_and_quantile_maps_are_bit_identical():
    rng = np.random.default_rng()
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(io.to_model_range(img), oracle.to_model_range(img))
    q01 = rng.uniform(-3, 1, 32)
    q99 = q01 + rng.uniform(1e-3, 4, 32)
    x = rng.normal(0, 2, (50, 7))
    assert np.array_equal(io.normalize(q01, q99, x), oracle.normalize(q01, q99, x))
    assert np.array_equal(io.unnormalize(q01, q99, x), oracle.unnormalize(q01, q99, x))


def test_state_bins_and_prompt_cleaning():
    rng = np.random.default_rng()
    s = np.concatenate([rng.uniform(-1.5, 1.5, 5000), np.linspace(-1, 1, 257), [-1.0, 1.0, 0.0]])
    assert np.array_equal(io.discretize_state(s), oracle.discretize_state(s))
    for prompt in ["  pick_up the\ncube ", "\u3000stack\u00a0blocks\u2003", "ouvrir le tiroir_é\t", "x", "a\u2028b\n"]:
        assert io.clean_prompt(prompt) == oracle.clean_prompt(prompt)


def test_token_ids_match_the_python_sentencepiece(tiny_pack_dir):
    rng = np.random.default_rng()
    model = str(tiny_pack_dir / "tokenizer.model")
    discrete = io.PromptTokenizer(model, 512, True, 2)
    plain = io.PromptTokenizer(model, 512, False, 2)
    words = ["pick", "up", "the", "red", "block", "bowl", "open_drawer", "Place", "it", "é", "\n", "  "]
    for _ in range(30):
        prompt = " ".join(rng.choice(words, int(rng.integers(1, 12))))
        if not prompt.strip():
            continue
        state = rng.uniform(-1.3, 1.3, int(rng.integers(1, 14))).astype(np.float32)
        assert np.array_equal(discrete.encode(prompt, state), oracle.tokens(model, prompt, state)), prompt
        assert np.array_equal(plain.encode(prompt, None), oracle.tokens(model, prompt, None)), prompt


def test_postprocess_matches_with_and_without_delta_mask():
    rng = np.random.default_rng()
    q01 = rng.uniform(-2, 0, 32)
    q99 = q01 + rng.uniform(0.1, 3, 32)
    model = rng.uniform(-1.2, 1.2, (50, 32)).astype(np.float32)
    state = rng.uniform(-1, 1, 7)
    for mask in ([], [True, False, True, True, False, False, True]):
        got = io.actions_to_robot(q01, q99, mask, 7, model, state)
        assert np.array_equal(got, oracle.postprocess(q01, q99, mask or None, 7, model, state))


def test_non_finite_model_actions_are_refused():
    from vla_edge.errors import ObservationError

    model = np.zeros((4, 8), np.float32) + 0.3
    model[2, 1] = np.nan
    with pytest.raises(ObservationError, match="'actions': expected finite model output"):
        io.actions_to_robot(np.zeros(8), np.ones(8), [], 3, model, np.zeros(3))


def test_sha256_matches_hashlib(tmp_path):
    rng = np.random.default_rng()
    for n in (0, 55, 56, 63, 64, 65, 1 << 20, (1 << 20) + 17):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        (tmp_path / "f").write_bytes(data)
        assert io.sha256_file(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()
