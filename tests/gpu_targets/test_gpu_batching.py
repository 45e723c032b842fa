"""The GPU targets' batch wiring on a faked H200 (fake_facts.py): the `cuda` target batches when
its ggml-CUDA path does (the CPU core stands in for that path here, as in
test_gpu_selection.py; the CUDA build itself needs the GPU machine), and a path that cannot batch
refuses naming the target and path."""

from __future__ import annotations

import numpy as np
import pytest
from fake_facts import h200

from vla_edge.errors import TargetUnavailableError
from vla_edge.packs.pack import Pack
from vla_edge.targets.gpu import target as gpu_target

pytest.importorskip("vla_edge._native", reason="native module not built (pip install . builds it)")


def test_the_cuda_target_batches_through_its_ggml_path_and_refuses_where_the_path_cannot(tiny_pack_dir, monkeypatch):
    from vla_edge.policy import Policy
    from vla_edge.targets.reference.target import ReferenceBackend
    from vla_edge.targets.x86.target import X86Backend

    monkeypatch.setattr(gpu_target, "_fallback_backend", lambda pack, index, **o: X86Backend(pack, threads=1, **o))
    _, create = gpu_target.target_functions("cuda")
    pack = Pack.open(tiny_pack_dir)
    backend = create(pack, facts=h200(), expert_graph="chunk")
    policy = Policy(pack, "cuda", backend)
    assert policy.batches and backend.describe()["expert_graph"] == "chunk"
    rng = np.random.default_rng()
    from vla_edge.packs.golden import random_observation
    from vla_edge.packs.writer import rel_l2

    requests = [(random_observation(pack, rng, prompt=p), rng.standard_normal(policy.noise_shape).astype(np.float32))
                for p in ("pick up the cube", "open the drawer and put the bowl in it")]
    for (obs, noise), chunk in zip(requests, policy.infer_batch(requests)):
        assert rel_l2(chunk.actions, policy.infer(obs, noise).actions) <= 1e-6
    not_batching = gpu_target.GpuBackend("gb10", ReferenceBackend(pack), backend.plan, backend.facts)
    assert not not_batching.batches
    with pytest.raises(TargetUnavailableError, match="target 'gb10' on its .* path cannot run several"):
        not_batching.sample_actions_batch([])
    policy.close()
