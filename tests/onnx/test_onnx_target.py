"""The `onnx` target: exported graphs run by onnxruntime against the NumPy reference, stage by
stage and end to end, on fresh random inputs. Tolerance: rel-L2 <= 1e-5 per stage and per chunk
(both are float32; the graphs reorder sums and use onnxruntime's kernels, measured ~1e-7)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from cli_runner import run_cli

from vla_edge.errors import PackError
from vla_edge.packs.pack import Pack
from vla_edge.packs.writer import rel_l2
from vla_edge.policy import load_policy
from vla_edge.targets.reference.pi05_model import Pi05Reference
from vla_edge.types import Observation

TOL = 1e-5


@pytest.fixture(scope="module")
def policies(tiny_pack_dir):
    ref, onx = load_policy(tiny_pack_dir, target="reference"), load_policy(tiny_pack_dir, target="onnx")
    yield ref, onx
    onx.close()


def _obs(rng, cameras, prompt_words=6):
    words = " ".join(rng.choice(["pick", "the", "red", "cube", "place", "bowl", "left", "slowly"], prompt_words))
    return Observation(cameras={c: rng.integers(0, 256, (int(rng.integers(60, 200)), int(rng.integers(60, 200)), 3),
                                                dtype=np.uint8) for c in cameras},
                       state=rng.standard_normal(6), prompt=words)


def test_each_stage_matches_the_reference(policies, tiny_pack_dir):
    _, onx = policies
    pack = Pack.open(tiny_pack_dir)
    ref = Pi05Reference(pack.config, pack.weights.float32)
    model = onx._backend.model
    rng = np.random.default_rng()
    cfg = pack.config
    image = rng.uniform(-1, 1, (cfg.vision.image_size, cfg.vision.image_size, 3)).astype(np.float32)
    assert rel_l2(model.vision(image), ref.vision(image)) <= TOL

    prefix = rng.standard_normal((37, cfg.llm.hidden_size)).astype(np.float32)
    ours, theirs = model.prefix_cache(prefix), ref.prefix_cache(prefix)
    for a, b in zip(ours.keys + ours.values, theirs.keys + theirs.values):
        assert a.shape == b.shape and rel_l2(a, b) <= TOL

    x_t = rng.standard_normal((cfg.action_horizon, cfg.action_dim)).astype(np.float32)
    for t in (1.0, float(rng.uniform(0.05, 0.95))):
        assert rel_l2(model.velocity(x_t, t, theirs), ref.velocity(x_t, t, theirs)) <= TOL


@pytest.mark.parametrize("cameras", [("base",), ("base", "wrist")])
def test_chunks_match_the_reference_on_random_observations(policies, cameras):
    ref, onx = policies
    rng = np.random.default_rng()
    for words in (3, 11):
        obs = _obs(rng, cameras, words)
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        a, b = ref.infer(obs, noise).actions, onx.infer(obs, noise).actions
        assert rel_l2(b, a) <= TOL
    assert onx.info.backend["implementation"].startswith("onnxruntime")


def test_export_cli_writes_checked_graphs_that_the_target_reuses(tiny_pack_dir, policies, tmp_path):
    out = tmp_path / "onnx"
    r = run_cli("pack", "export-onnx", str(tiny_pack_dir), "--out", str(out))
    assert r.returncode == 0, r.stderr
    description = json.loads((out / "onnx_export.json").read_text())
    assert description["golden_rel_l2"] <= 1e-5 and description["opset"] == 17
    for name in description["files"].values():
        model = onnx.load(str(out / name))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version == 17
    ref, _ = policies
    rng = np.random.default_rng()
    obs, noise = _obs(rng, ("base", "wrist")), rng.standard_normal(ref.noise_shape).astype(np.float32)
    with load_policy(tiny_pack_dir, target="onnx", onnx_dir=out) as reused:
        assert rel_l2(reused.infer(obs, noise).actions, ref.infer(obs, noise).actions) <= TOL
        assert reused.info.backend["dir"] == str(out)

    again = run_cli("pack", "export-onnx", str(tiny_pack_dir), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_an_export_of_another_pack_is_refused(tiny_pack_dir, tmp_path):
    out = tmp_path / "onnx"
    assert run_cli("pack", "export-onnx", str(tiny_pack_dir), "--out", str(out)).returncode == 0
    description = json.loads((out / "onnx_export.json").read_text())
    (out / "onnx_export.json").write_text(json.dumps({**description, "pack": "some-other-pack"}))
    with pytest.raises(PackError, match="onnx_export.json.*some-other-pack"):
        load_policy(tiny_pack_dir, target="onnx", onnx_dir=out)
    with pytest.raises(PackError, match="missing"):
        load_policy(tiny_pack_dir, target="onnx", onnx_dir=tmp_path)


def test_an_export_that_misses_the_golden_chunk_is_not_kept(tiny_pack_dir, tmp_path, monkeypatch):
    import vla_edge.packs.writer as writer
    from vla_edge.targets.onnx.export import write_export

    monkeypatch.setattr(writer, "rel_l2", lambda a, b: 1.0)  # as if the graphs computed something else
    with pytest.raises(PackError, match="export not kept"):
        write_export(tiny_pack_dir, tmp_path / "onnx")
    assert not list(tmp_path.iterdir())  # neither the export nor its staging folder


def test_padding_columns_must_be_zero():
    from vla_edge.targets.onnx.graph import GraphBuilder

    b = GraphBuilder("t")
    x = b.input("x", onnx.TensorProto.FLOAT, [2, 3])
    weight = np.zeros((4, 5), np.float32)
    b.linear(x, weight, None, 3, "ok")  # zero padding beyond the 3 real columns: dropped
    weight[1, 4] = 0.5
    with pytest.raises(ValueError, match="zero padding"):
        b.linear(x, weight, None, 3, "bad")
