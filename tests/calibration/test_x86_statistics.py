"""`calibrate --target x86`: statistics from the native graph's own activations (the runtime's
matmul observer) agree with the reference target's, and observing changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.calibration.calibrate import calibrate
from vla_edge.packs.golden import random_observation
from vla_edge.packs.pack import Pack
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.native
native = pytest.importorskip("vla_edge._native")

# The float32 tiny pack on x86 agrees with the reference to ~1e-5 rel-L2 per output; statistics
# (sums of squares, maxima of the inputs of every product; rel-L2 over the whole table) to well
# within this. Single channels can differ more where the value is tiny: the time embedding's
# cos(angle) near zero is 1e-8 on x86 (C++ double) and 1e-26 in NumPy.
STATS_RTOL = 1e-3


def test_x86_statistics_match_the_reference(tiny_pack_dir, obs_dir, tmp_path):
    ref = calibrate(tiny_pack_dir, [obs_dir], tmp_path / "ref.npz", samples=3, seed=3)
    x86 = calibrate(tiny_pack_dir, [obs_dir], tmp_path / "x86.npz", samples=3, seed=3, target="x86")
    assert x86.header["target"] == "x86" and x86.header["data"] == ref.header["data"]
    # the native prefix graph stops at the last LLM layer's K/V: its query, attention output and MLP
    # never reach the actions
    last = f"pali.blk.{Pack.open(tiny_pack_dir, check='size').config.llm.num_layers - 1}."
    skipped = {last + n + ".weight" for n in ("attn_q", "attn_o", "ffn_gate", "ffn_up", "ffn_down")}
    assert set(x86.header["unused"]) == skipped and not ref.header["unused"]
    assert set(x86.tensors) == set(ref.tensors) - skipped
    for name, x in x86.tensors.items():
        r = ref.tensors[name]
        assert x.steps == r.steps, name
        np.testing.assert_array_equal(x.count, r.count, err_msg=name)  # same rows, per flow step
        assert rel_l2(x.sum_sq, r.sum_sq) <= STATS_RTOL, name  # per step and channel
        assert rel_l2(x.absmax_channel, r.absmax_channel) <= STATS_RTOL, name


def test_observing_changes_no_output(tiny_pack_dir):
    from vla_edge.targets.x86.target import create_backend

    pack = Pack.open(tiny_pack_dir, check="size")
    pre = pack.family.preprocessor(pack)
    rng = np.random.default_rng()
    inputs = pre(random_observation(pack, rng), rng.standard_normal(pre.noise_shape()).astype(np.float32))
    backend = create_backend(pack)
    plain = backend.sample_actions(inputs).actions
    seen = []
    backend.runtime.set_matmul_observer(lambda name, x: seen.append((name, x.shape)))
    observed = backend.sample_actions(inputs).actions
    backend.runtime.set_matmul_observer(None)
    again = backend.sample_actions(inputs).actions
    np.testing.assert_array_equal(observed, plain)
    np.testing.assert_array_equal(again, plain)
    names = [n for n, _ in seen]
    assert names.count("action.blk.0.ffn_down.weight") == pack.config.num_flow_steps
    assert "v.patch_embd.weight" in names and "pali.blk.0.attn_q.weight" in names
    assert all(len(shape) == 2 for _, shape in seen)


@pytest.mark.parametrize("recipe", ["q4_k_m"])
def test_x86_calibration_feeds_quantize(tiny_pack_dir, obs_dir, tmp_path, recipe):
    from vla_edge.packs.quantize import quantize_pack

    calib = tmp_path / "x86.npz"
    calibrate(tiny_pack_dir, [obs_dir], calib, samples=2, seed=3, target="x86")
    out = Pack.open(quantize_pack(tiny_pack_dir, recipe, tmp_path / "q", golden=False, calib=calib))
    info = out.manifest.source["calibration"]
    kquant = [n for n, i in out.weights.tensor_infos().items() if i.ggml_type.endswith("_K")]
    unused = [n for n in kquant if n.startswith("pali.blk.1.") and not n.endswith(("attn_k.weight", "attn_v.weight"))]
    assert info["target"] == "x86" and info["tensors_weighted"] == len(kquant) - len(unused) > 0
