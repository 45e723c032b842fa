"""The server batching real forward passes: `max_batch 4` on the x86 target (the native core runs
the batch in one pass per stage). Concurrent robots share passes (batch_size in the replies), each
gets the chunk a one-at-a-time server gives it for the same message (rel-L2 <= 1e-6: same float32
operations, summation order aside), and a bad request inside a batch gets its named error while
the others are served."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from serve_client import client, observation, request

from vla_edge.packs.writer import rel_l2
from vla_edge.policy import load_policy
from vla_edge.serve import Batching

pytest.importorskip("vla_edge._native", reason="native module not built (pip install . builds it)")
pytestmark = pytest.mark.native

ROBOTS = 4


@pytest.fixture(scope="module")
def x86_policy(tiny_pack_dir):
    return load_policy(tiny_pack_dir, target="x86", threads=2, seed=3)


def _serve_together(port, messages):
    """Every robot connects, then all send at once; replies in robot order."""
    replies: list = [None] * len(messages)
    together = threading.Barrier(len(messages))

    def robot(i: int) -> None:
        with client(port) as (ws, _):
            together.wait(30)
            replies[i] = request(ws, messages[i], timeout=120)

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(len(messages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return replies


def test_concurrent_robots_are_served_batched_with_the_chunks_of_single_passes(x86_policy, start_server):
    rng = np.random.default_rng()
    messages = [observation(rng, x86_policy) for _ in range(ROBOTS)]
    messages[1]["prompt"] = "open the drawer slowly and then put the red cube inside"  # other prompt length
    messages[3]["images"].pop("wrist")  # another camera set
    messages[2]["images"]["base"] = np.zeros((8, 8), np.uint8)  # one robot sends a bad image
    batched_server, port = start_server(x86_policy, batching=Batching(max_batch=ROBOTS, wait_ms=500))
    assert batched_server.batching.max_batch == ROBOTS
    batched = _serve_together(port, messages)
    batched_server.stop()
    _, single_port = start_server(x86_policy)  # max_batch 1: one pass per request
    with client(single_port) as (ws, _):
        alone = [request(ws, m, timeout=120) for m in messages]

    assert isinstance(batched[2], str) and "cameras.base" in batched[2]
    assert isinstance(alone[2], str) and "cameras.base" in alone[2]
    sizes = []
    for i in (0, 1, 3):
        got, want = batched[i], alone[i]
        assert want["server_timing"]["batch_size"] == 1
        sizes.append(got["server_timing"]["batch_size"])
        assert rel_l2(got["actions"], want["actions"]) <= 1e-6, f"robot {i}"
        assert np.abs(got["actions"]).max() > 0
    assert max(sizes) >= 2, sizes  # robots shared passes
    assert rel_l2(batched[0]["actions"], batched[1]["actions"]) > 1e-3  # and kept their own results
