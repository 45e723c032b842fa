"""x86 target (ggml) against the NumPy reference, graph/buffer reuse, and bad input.

Tolerance: F32 pack, whole action chunk, rel-L2 <= 1e-4 (float32 on both sides; ggml sums in a
different order and uses its own exp/tanh).
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge import PackError, TargetUnavailableError, load_policy
from vla_edge.packs.golden import random_observation
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.native


@pytest.fixture(scope="module")
def pair(tiny_pack_dir):
    return load_policy(tiny_pack_dir, target="reference"), load_policy(tiny_pack_dir, target="x86", threads=2)


@pytest.mark.parametrize("cameras", [("base",), ("base", "wrist")])
def test_x86_matches_reference_on_fresh_inputs(pair, cameras):
    ref, x86 = pair
    rng = np.random.default_rng()
    for _ in range(3):
        obs = random_observation(ref.pack, rng, prompt="stack the blue cube on the green cube")
        obs.cameras = {k: v for k, v in obs.cameras.items() if k in cameras}
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        expected = ref.infer(obs, noise=noise).actions
        got = x86.infer(obs, noise=noise)
        err = rel_l2(got.actions, expected)
        assert err <= 1e-4, f"rel-L2 {err:.2e} with cameras {cameras}"
        assert {"vision", "prefix", "expert_step_0", "expert_total"} <= set(got.latency_ms)


def test_fused_and_element_wise_gelu_paths_agree(pair, tiny_pack_dir):
    """The CPU's fused GELU/GeGLU custom ops against ggml's element-wise chain (kept for other
    backends) and the reference: the same float32 formula, so only rounding differs."""
    ref, fused = pair
    unfused = load_policy(tiny_pack_dir, target="x86", threads=2, unfused_ops=True)
    assert fused.info.backend["fused_gelu_ops"] and not unfused.info.backend["fused_gelu_ops"]
    rng = np.random.default_rng()
    for _ in range(2):
        obs = random_observation(ref.pack, rng)
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        a, b = fused.infer(obs, noise=noise).actions, unfused.infer(obs, noise=noise).actions
        assert rel_l2(a, b) <= 1e-5
        assert rel_l2(a, ref.infer(obs, noise=noise).actions) <= 1e-4


def test_expert_loop_in_one_graph_equals_the_per_step_loop(pair, tiny_pack_dir):
    """expert_graph='chunk' (all flow steps in one graph, the GPU default) against 'step' (one graph
    per step, the x in between updated on the host): the same float32 Euler update, in-graph
    instead of on the host, so the chunks agree to rounding; and both against the reference."""
    ref, step = pair
    chunk = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph="chunk")
    assert (step.info.backend["expert_graph"], chunk.info.backend["expert_graph"]) == ("step", "chunk")
    rng = np.random.default_rng()
    for num_steps in (10, 3):
        obs = random_observation(ref.pack, rng)
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        a = step._backend.runtime.sample_actions(*_native_inputs(step, obs, noise), num_steps)[0]
        b, timings = chunk._backend.runtime.sample_actions(*_native_inputs(step, obs, noise), num_steps)
        assert rel_l2(b, a) <= 1e-6, f"{num_steps} steps: rel-L2 {rel_l2(b, a):.2e}"
        assert "expert_total" in timings and not any(k.startswith("expert_step_") for k in timings)
    got = chunk.infer(obs, noise=noise).actions
    assert rel_l2(got, ref.infer(obs, noise=noise).actions) <= 1e-4
    # every adaptive norm (two per layer and the output norm, per step) is one rms_norm -> mul -> add
    # run of adjacent nodes, the form ggml-CUDA fuses into one kernel
    norms = 2 * ref.pack.config.expert.num_layers + 1
    assert chunk._backend.runtime.adjacent_norm_chains == ref.pack.config.num_flow_steps * norms
    assert step._backend.runtime.adjacent_norm_chains == norms
    # every key's rope -> view -> cache write is a run too (prefix and expert), which ggml-CUDA fuses
    cfg = ref.pack.config
    assert chunk._backend.runtime.adjacent_rope_set_rows == cfg.num_flow_steps * cfg.expert.num_layers + cfg.llm.num_layers
    assert step._backend.runtime.adjacent_rope_set_rows == cfg.expert.num_layers + cfg.llm.num_layers


def test_flash_attention_equals_the_matmul_form_and_the_reference(pair, tiny_pack_dir):
    """attention='flash' (ggml_flash_attn_ext in every stage, the default off the CPU) against the
    products + softmax form and the reference, vision / prefix / expert alike: on the CPU both run
    in float32 (an online softmax instead of a materialised one), so they agree to rounding. The
    CPU default ('auto') runs flash attention in the vision tower only, where it measured faster."""
    ref, default = pair
    flash = load_policy(tiny_pack_dir, target="x86", threads=2, attention="flash")
    matmul = load_policy(tiny_pack_dir, target="x86", threads=2, attention="matmul")
    rng = np.random.default_rng()
    for cameras in (("base",), ("base", "wrist")):
        obs = random_observation(ref.pack, rng, prompt="put the cup in the sink")
        obs.cameras = {k: v for k, v in obs.cameras.items() if k in cameras}
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        a, b = flash.infer(obs, noise=noise).actions, matmul.infer(obs, noise=noise).actions
        assert rel_l2(a, b) <= 1e-5, f"flash vs matmul rel-L2 {rel_l2(a, b):.2e}"
        assert rel_l2(default.infer(obs, noise=noise).actions, b) <= 1e-5
        assert rel_l2(a, ref.infer(obs, noise=noise).actions) <= 1e-4
    assert (flash.info.backend["attention"], matmul.info.backend["attention"]) == ("flash", "matmul")
    assert default.info.backend["attention"] == "flash (vision), matmul (prefix, expert)"
    assert (flash.info.backend["gelu_ops"], matmul.info.backend["gelu_ops"]) == ("fused-cpu", "fused-cpu")


def _native_inputs(policy, obs, noise):
    """The model-space inputs Policy.infer hands the backend (images, tokens, noise)."""
    inputs = policy._pre(obs, noise)
    return inputs.images, inputs.tokens, inputs.noise


@pytest.mark.parametrize("option, message", [({"expert_graph": "fused"}, "expert_graph must be"),
                                             ({"attention": "sparse"}, "attention must be"),
                                             ({"fused_matrices": True}, "unknown options"),
                                             ({"device_weights": "f16"}, "unknown options")])
def test_bad_runtime_options_are_refused(tiny_pack_dir, option, message):
    with pytest.raises(TargetUnavailableError, match=message):
        load_policy(tiny_pack_dir, target="x86", threads=1, **option)


def test_graphs_and_buffers_are_reused_across_calls(pair):
    _, x86 = pair
    rng = np.random.default_rng()
    obs = random_observation(x86.pack, rng)
    x86.infer(obs)
    runtime = x86._backend.runtime
    builds, buffers = runtime.graph_builds, runtime.compute_buffer_bytes
    for _ in range(3):
        x86.infer(obs)  # same shapes: no graph rebuild, no buffer growth
    assert runtime.graph_builds == builds and runtime.compute_buffer_bytes == buffers
    obs.prompt = obs.prompt + " carefully"  # more tokens: the prefix/expert graphs are rebuilt once
    x86.infer(obs)
    assert runtime.graph_builds == builds + 2


def test_each_input_shape_gets_its_own_graph_marker(pair, tiny_pack_dir, monkeypatch):
    """Off the CPU every (stage, input shape) starts its graph with a marker node of its own, so
    ggml-CUDA captures one CUDA graph per shape instead of updating one shape's graph to another's
    kernels (that update crashed F16 cuBLAS products on Hopper). The CPU runs without markers by
    default; VLA_EDGE_SHAPE_MARKERS=1 turns them on here to check that a marked graph computes the
    same chunk bit for bit (the marker is a view, which no backend computes) and that shapes seen
    before reuse their marker."""
    ref, plain = pair
    assert plain._backend.runtime.shape_markers == 0
    monkeypatch.setenv("VLA_EDGE_SHAPE_MARKERS", "1")
    marked = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph="chunk")
    monkeypatch.delenv("VLA_EDGE_SHAPE_MARKERS")
    unmarked = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph="chunk")
    rng = np.random.default_rng()
    one = random_observation(ref.pack, rng, prompt="pick")
    one.cameras = {k: v for k, v in one.cameras.items() if k == "base"}
    two = random_observation(ref.pack, rng, prompt="pick up the cup")  # the state is in the prompt too
    shapes = []
    for obs in (one, two, one, two):
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        got = marked.infer(obs, noise=noise).actions
        np.testing.assert_array_equal(got, unmarked.infer(obs, noise=noise).actions)
        assert rel_l2(got, ref.infer(obs, noise=noise).actions) <= 1e-4
        shapes.append(marked._backend.runtime.shape_markers)
    # vision, prefix and expert chunk: three markers per new shape, none for a shape seen before
    assert shapes == [3, 6, 6, 6]
    assert unmarked._backend.runtime.shape_markers == 0

@pytest.mark.parametrize("threads", [0, -3])
def test_bad_thread_count_is_refused(tiny_pack_dir, threads):
    with pytest.raises(TargetUnavailableError, match="threads must be a positive integer"):
        load_policy(tiny_pack_dir, target="x86", threads=threads)


def test_native_errors_carry_the_cpp_text(tiny_pack_dir, tmp_path):
    from vla_edge import _native

    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        _native.Pi05Runtime(str(tiny_pack_dir / "pi05.gguf"), 0)
    with pytest.raises(RuntimeError, match="cannot open weights file"):
        _native.Pi05Runtime(str(tmp_path / "nope.gguf"), 1)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(np.random.default_rng().bytes(2048))
    with pytest.raises(RuntimeError, match="not a readable GGUF"):
        _native.Pi05Runtime(str(garbage), 1)
    runtime = _native.Pi05Runtime(str(tiny_pack_dir / "pi05.gguf"), 1)
    with pytest.raises(ValueError, match="images must be"):
        runtime.sample_actions(np.zeros((1, 100, 100, 3), np.float32) + 0.5, np.array([2, 5], np.int32),
                               np.ones((10, 32), np.float32), 10)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        runtime.sample_actions(np.full((1, 224, 224, 3), 0.25, np.float32), np.array([2, 99999], np.int32),
                               np.ones((10, 32), np.float32), 10)


def _rewrite(pack_dir, change, arch="pi05"):
    from vla_edge.packs.gguf_io import GGUFFile, PlannedTensor, write_gguf

    src = GGUFFile(pack_dir / "pi05.gguf")
    meta = src.metadata
    meta.pop("general.architecture", None)
    planned = []
    for name, info in src.tensor_infos().items():
        kind, value = change.get(name, ("F32", src.float32(name)))
        planned.append(PlannedTensor(name, tuple(value.shape), kind, lambda v=value: v))
    out = pack_dir / "other.gguf"
    write_gguf(out, arch, meta, planned)
    return out


def test_wrong_shape_wrong_type_and_family_are_named(tiny_pack_copy):
    from vla_edge import _native

    rng = np.random.default_rng()
    wrong = _rewrite(tiny_pack_copy, {"action.blk.1.attn_k.weight": ("F32", rng.standard_normal((64, 100)).astype(np.float32))})
    with pytest.raises(RuntimeError, match=r"'action.blk.1.attn_k.weight' has shape \[64, 100\], expected \[64, 128\]"):
        _native.Pi05Runtime(str(wrong), 1)
    f16_norm = _rewrite(tiny_pack_copy, {"v.blk.0.ln1.bias": ("F16", rng.standard_normal(96).astype(np.float32))})
    with pytest.raises(RuntimeError, match="'v.blk.0.ln1.bias' has unsupported type f16"):
        _native.Pi05Runtime(str(f16_norm), 1)
    llama = _rewrite(tiny_pack_copy, {}, arch="llama")
    with pytest.raises(RuntimeError, match="model family is 'llama'"):
        _native.Pi05Runtime(str(llama), 1)


def test_truncated_gguf_is_an_error_not_a_crash(tiny_pack_copy):
    from vla_edge import _native

    path = tiny_pack_copy / "pi05.gguf"
    data = path.read_bytes()
    cut = tiny_pack_copy / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(RuntimeError, match="truncated"):
        _native.Pi05Runtime(str(cut), 1)


def test_gpu_only_weight_layouts_are_refused_on_the_cpu(tiny_pack_dir):
    """fused_matrices / device_weights re-lay weights out in device memory; the CPU runs the mapped
    file, so asking for them there is a named error, not a silently ignored option."""
    from vla_edge.packs.pack import Pack
    from vla_edge.targets.x86.target import X86Backend

    pack = Pack.open(tiny_pack_dir, check="size")
    with pytest.raises(TargetUnavailableError, match="fused_matrices applies to GPU devices only"):
        X86Backend(pack, threads=1, fused_matrices=True)
    for widened in ("f16", "bf16"):
        with pytest.raises(TargetUnavailableError, match=f"device_weights='{widened}' applies to GPU devices only"):
            X86Backend(pack, threads=1, device_weights=widened)
    # "auto" (the GPU default) is accepted and means the mapped file, unfused, on the CPU
    backend = X86Backend(pack, threads=1, device_weights="auto", fused_matrices="auto")
    assert backend.describe()["device_weights"] == "stored (CPU)" and not backend.describe()["fused_matrices"]
    with pytest.raises(TargetUnavailableError, match="device_weights must be 'auto', 'stored', 'f16' or 'bf16', got 'int3'"):
        X86Backend(pack, threads=1, device_weights="int3")


def test_automatic_device_weights_widen_only_on_a_discrete_gpu_with_room():
    """device_weights='auto' off the CPU: 16-bit matrices on a discrete GPU whose free memory holds
    them with max(2 GiB, 10%) to spare, BF16 where the GPU has BF16 tensor cores (compute capability
    >= 8.0) and F16 before that; the pack's types on an integrated GPU (its memory is the robot
    computer's RAM) and where the copy does not fit. The note says which and why."""
    from vla_edge import _native

    gib = 2**30
    to, note = _native.automatic_widening(int(6.3 * gib), 70 * gib, 80 * gib, True, 90)  # pi0.5 on an H100
    assert to == "bf16" and note.startswith("bf16 (auto: discrete GPU with room and BF16 tensor cores; BF16 weights "
                                            "6.30 GiB, device free 70.00 of 80.00 GiB, compute capability 9.0")
    to, note = _native.automatic_widening(int(6.3 * gib), 14 * gib, 16 * gib, True, 75)  # Turing T4: no BF16 cores
    assert to == "f16" and note.startswith("f16 (auto: discrete GPU with room; F16 weights 6.30 GiB")
    to, note = _native.automatic_widening(int(6.3 * gib), 60 * gib, 64 * gib, False, 87)  # Jetson AGX Orin 64 GB
    assert to == "stored" and "integrated GPU" in note
    to, note = _native.automatic_widening(int(6.3 * gib), 8 * gib, 12 * gib, True, 86)  # 12 GB card: 8.3 GiB needed
    assert to == "stored" and "bf16 copy does not fit" in note
    assert _native.automatic_widening(int(6.3 * gib), int(8.4 * gib), 12 * gib, True, 86)[0] == "bf16"


def test_padded_expert_kv_with_a_mask_equals_the_unpadded_range(pair, tiny_pack_dir, monkeypatch):
    """VLA_EDGE_PAD_EXPERT_KV=1 (the default off the CPU, forced on here; for ggml-CUDA's grouped-query
    flash kernel, which needs a mask and a K/V length that is a multiple of 256): every observation's
    K/V range is rounded up to 256 rows, the rows past its chunk zero-filled and masked with -inf. On
    the CPU with flash attention forced, the chunk must equal the unpadded one to rounding, for one
    observation and for a batch of two with different prefix lengths (their ranges then start at
    padded bases), in the per-step and the one-graph expert alike; and the reference still agrees."""
    ref = pair[0]
    plain = load_policy(tiny_pack_dir, target="x86", threads=2, attention="flash")
    monkeypatch.setenv("VLA_EDGE_PAD_EXPERT_KV", "1")
    padded = {form: load_policy(tiny_pack_dir, target="x86", threads=2, attention="flash", expert_graph=form)
              for form in ("step", "chunk")}
    matmul = load_policy(tiny_pack_dir, target="x86", threads=2, attention="matmul")  # no flash: no padding
    assert plain._backend.runtime.expert_kv_pad == 1 and matmul._backend.runtime.expert_kv_pad == 1
    assert all(p._backend.runtime.expert_kv_pad == 256 for p in padded.values())
    rng = np.random.default_rng()
    one = random_observation(ref.pack, rng, prompt="open the drawer")
    two = random_observation(ref.pack, rng, prompt="put the red block on the blue plate, then close the lid")
    two.cameras = {k: v for k, v in two.cameras.items() if k == "base"}
    noises = [rng.standard_normal(ref.noise_shape).astype(np.float32) for _ in range(2)]
    expected = [plain.infer(o, noise=n).actions for o, n in zip((one, two), noises)]
    for form, policy in padded.items():
        got = policy.infer(one, noise=noises[0]).actions
        assert rel_l2(got, expected[0]) <= 1e-5, f"{form}: rel-L2 {rel_l2(got, expected[0]):.2e}"
        batch = policy.infer_batch([(one, noises[0]), (two, noises[1])])
        for chunk, want in zip(batch, expected):
            assert rel_l2(chunk.actions, want) <= 1e-5, f"{form} batch: rel-L2 {rel_l2(chunk.actions, want):.2e}"
    assert rel_l2(expected[1], ref.infer(two, noise=noises[1]).actions) <= 1e-4


SWITCHES = ("VLA_EDGE_GEMMA_PLUS_ONE", "VLA_EDGE_CONSTANT_CONDITIONING", "VLA_EDGE_FOLD_EXPERT_GATES")


@pytest.mark.parametrize("switches", [
    {"VLA_EDGE_GEMMA_PLUS_ONE": "1"},
    {"VLA_EDGE_CONSTANT_CONDITIONING": "1"},
    {"VLA_EDGE_FOLD_EXPERT_GATES": "1", "VLA_EDGE_GEMMA_PLUS_ONE": "1"},
])
def test_constants_computed_once_equal_the_per_call_graph(tiny_pack_dir, monkeypatch, switches):
    """The constants (the Gemma norms' 1 + w, the expert's conditioning for the step schedule, its
    gates folded into per-step copies of the output / down projections) are the same arithmetic as
    the per-call graph in another order: the one-graph expert with them equals the one without to
    rounding (F32 pack), for one observation, a batch of two, and after the step count changes (the
    constants are remade for the new schedule and back again)."""
    import dataclasses

    for name in SWITCHES:
        monkeypatch.setenv(name, "0")
    plain = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph="chunk")
    for name, value in switches.items():
        monkeypatch.setenv(name, value)
    folded = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph="chunk")
    rng = np.random.default_rng()
    one = random_observation(plain.pack, rng, prompt="wipe the table")
    two = random_observation(plain.pack, rng, prompt="hand me the screwdriver on the left")
    noises = [rng.standard_normal(plain.noise_shape).astype(np.float32) for _ in range(2)]
    expected = [plain.infer(o, noise=n).actions for o, n in zip((one, two), noises)]
    got = folded.infer(one, noise=noises[0]).actions
    assert rel_l2(got, expected[0]) <= 1e-5, f"rel-L2 {rel_l2(got, expected[0]):.2e}"
    for chunk, want in zip(folded.infer_batch([(one, noises[0]), (two, noises[1])]), expected):
        assert rel_l2(chunk.actions, want) <= 1e-5
    inputs = folded._inputs(one, noises[0])
    raw = {}
    for steps in (4, 10):  # 10 again: the pack's own schedule, after the constants were remade for 4
        schedule = dataclasses.replace(inputs, num_steps=steps)
        want = plain._backend.sample_actions(schedule).actions
        raw[steps] = folded._backend.sample_actions(schedule).actions
        assert rel_l2(raw[steps], want) <= 1e-5, f"{steps} steps: rel-L2 {rel_l2(raw[steps], want):.2e}"
    assert rel_l2(raw[4], raw[10]) > 1e-3  # the schedules differ, and so do their chunks
    # what was computed once (last for 10 steps): 1 + w of 2 Gemma norms per LLM layer; mod and mod + 1
    # of 2 adaptive norms per expert layer and of the final one; 2 folded matrices per expert layer and step
    layers = plain.pack.config.llm.num_layers
    gemma = 2 * layers if "VLA_EDGE_GEMMA_PLUS_ONE" in switches else 0
    conditioning = 2 * (2 * layers + 1) if switches.keys() - {"VLA_EDGE_GEMMA_PLUS_ONE"} else 0
    gates = 2 * layers * 10 if "VLA_EDGE_FOLD_EXPERT_GATES" in switches else 0
    assert folded._backend.runtime.constant_tensors == gemma + conditioning + gates
    assert plain._backend.runtime.constant_tensors == 0 and plain._backend.describe()["constants"] == "none"
    if gates:
        assert "gates folded (asked for" in folded._backend.describe()["constants"]


def test_cpu_defaults_compute_only_the_gemma_constants(tiny_pack_dir, monkeypatch):
    """On the CPU the Gemma norms' 1 + w is on by default; the expert's constants are not (the CPU
    runs one graph per flow step, and even a one-graph expert there folds no gates: not a discrete GPU)."""
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    layers = None
    for form in ("step", "chunk"):
        policy = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph=form)
        layers = policy.pack.config.llm.num_layers
        policy.infer(random_observation(policy.pack, np.random.default_rng(), prompt="stop"))
        assert policy._backend.runtime.constant_tensors == 2 * layers
        assert policy._backend.describe()["constants"] == "gemma norms 1 + w"
        assert policy._backend.describe()["expert_loop"] == "ggml graph"  # our own loop is CUDA-only
        assert policy._backend.describe()["prefix_loop"] == "ggml graph"
        assert policy._backend.describe()["vision_loop"] == "ggml graph"
    monkeypatch.setenv("VLA_EDGE_CONSTANT_CONDITIONING", "1")
    policy = load_policy(tiny_pack_dir, target="x86", threads=2, expert_graph="chunk")
    policy.infer(random_observation(policy.pack, np.random.default_rng(), prompt="stop"))
    assert "gates multiplied (not a discrete GPU" in policy._backend.describe()["constants"]
