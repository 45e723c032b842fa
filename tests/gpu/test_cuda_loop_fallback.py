"""A CUDA loop that fails at run time (a launch or a capture the device refuses, as the prefix loop's
first launch on the full pack did on 2026-12-07) is dropped for the rest of the session and ggml's graph
of that stage runs instead, from that very call on: the chunks equal those of a policy with that loop
switched off, `describe()` names the failure and stderr says so. Slower, never silent, never a chunk
lost. The failure is injected: VLA_EDGE_CUDA_FAIL_LOOP=<stage> makes that loop throw as a refused
launch would.

GPU machine only (skipped elsewhere). Both policies take cuBLAS's default products
(VLA_EDGE_CUDA_TUNED_PRODUCTS=0), so that the stages they share run the same algorithms; their chunks
then differ only by run-to-run rounding, if at all: bound 1e-5 (rel-L2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge.packs.golden import random_observation
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.gpu
SAME_PATHS = 1e-5


@pytest.mark.parametrize("stage", ["vision", "prefix", "expert"])
def test_a_failing_loop_hands_its_stage_to_the_ggml_graph_visibly(pack: Path, stage: str, cuda_policy,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    failing = cuda_policy(pack, VLA_EDGE_CUDA_TUNED_PRODUCTS="0", VLA_EDGE_CUDA_FAIL_LOOP=stage)
    # the loop switches are read when a policy is made, the injected failure at every call
    graph = cuda_policy(pack, **{f"VLA_EDGE_CUDA_{stage.upper()}": "0"})
    rng = np.random.default_rng()
    for prompt in ("pick up the cube", "open the drawer and take out the spoon"):  # the failing call, a later one
        obs = random_observation(graph.pack, rng, prompt=prompt)
        noise = rng.standard_normal(graph.noise_shape).astype(np.float32)
        assert rel_l2(failing.infer(obs, noise=noise).actions, graph.infer(obs, noise=noise).actions) <= SAME_PATHS
    note = failing._backend.describe()[f"{stage}_loop"]
    assert note.startswith(f"ggml graph (CUDA {stage} loop failed, ggml's graph from then on: "), note
    assert "VLA_EDGE_CUDA_FAIL_LOOP" in note, note
    assert capfd.readouterr().err.count(f"CUDA {stage} loop failed") == 1  # said once, at the failure
