"""What the tests of our own CUDA loops share: the tiny pack's F16 and q4_k_m twins (the loops read
BF16 matrices: GPUs with BF16 tensor cores widen F16 and quantised ones to BF16) and `cuda` policies
made with given environment switches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge import load_policy
from vla_edge.packs.golden import random_observation
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.writer import rel_l2


@pytest.fixture
def hopper() -> bool:
    """Whether GPU 0 has compute capability 9.0 or newer (the GPU machine's H100 / H200), read through
    torch; skips where torch or a CUDA device is absent."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch")
    return torch.cuda.get_device_capability(0) >= (9, 0)


@pytest.fixture(scope="module", params=["f16", "q4_k_m"])
def pack(request, tiny_pack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}"
    quantize_pack(tiny_pack_dir, request.param, out)
    return out


@pytest.fixture
def cuda_policy(monkeypatch: pytest.MonkeyPatch):
    """make(pack, NAME=value, ...): the pack on the `cuda` target with those environment switches set
    (each loop reads its switches when the runtime is made); skips where the target does not load."""

    def make(pack_dir: Path, **switches: str):
        for name, value in switches.items():
            monkeypatch.setenv(name, value)
        try:
            return load_policy(pack_dir, target="cuda")
        except Exception as exc:  # noqa: BLE001 - no CUDA build or no GPU here
            pytest.skip(f"the cuda target does not load here: {exc}")

    return make


@pytest.fixture
def batch_matches_singles():
    """check(policy, prompts, tol): fresh random observations with these prompts run as one batch equal
    each run alone within `tol` (rel-L2 of the chunk): each observation reads and writes only its own
    rows."""

    def check(policy, prompts: tuple[str, ...], tol: float) -> None:
        assert policy.batches
        rng = np.random.default_rng()
        requests = [(random_observation(policy.pack, rng, prompt=p),
                     rng.standard_normal(policy.noise_shape).astype(np.float32)) for p in prompts]
        for (obs, noise), chunk in zip(requests, policy.infer_batch(requests)):
            assert not isinstance(chunk, Exception), chunk
            assert rel_l2(chunk.actions, policy.infer(obs, noise=noise).actions) <= tol

    return check


@pytest.fixture
def matches_graph_and_reference():
    """check(loop, graph, pack_dir, prompts, to_graph, to_reference): on a fresh random observation per
    prompt (and fresh noise), the loop's chunk is within `to_graph` of ggml's graph's and within
    `to_reference` of the `reference` target's (rel-L2)."""

    def check(loop, graph, pack_dir: Path, prompts: tuple[str, ...], to_graph: float, to_reference: float) -> None:
        ref = load_policy(pack_dir, target="reference")
        rng = np.random.default_rng()
        for prompt in prompts:
            obs = random_observation(ref.pack, rng, prompt=prompt)
            noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
            ours = loop.infer(obs, noise=noise).actions
            assert rel_l2(ours, graph.infer(obs, noise=noise).actions) <= to_graph
            assert rel_l2(ours, ref.infer(obs, noise=noise).actions) <= to_reference

    return check
