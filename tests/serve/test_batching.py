"""Batch collection for "many robots per GPU": requests of different connections that arrive
together go to one `infer_batch` call (after a bounded wait), each reply carries its own request's
result, one connection never has two requests in a batch, and a Policy that cannot batch is not
served batched at all. These tests drive the scheduler with a stand-in whose pass takes a known
time (serve_client.TimedBatchPolicy); test_batching_x86.py serves real batched passes."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from serve_client import TimedBatchPolicy, client, observation, request

from vla_edge.errors import ConfigError
from vla_edge.serve import Batching, PolicyServer
from vla_edge.serve.scheduler import ClientQueue, FairScheduler

PASS_S = 0.1


def test_a_policy_without_infer_batch_is_refused_batching_by_name(tiny_policy):
    with pytest.raises(ConfigError, match="--max-batch") as refused:
        PolicyServer(tiny_policy, batching=Batching(max_batch=4))
    assert "target 'reference' cannot run several observations in one forward pass" in str(refused.value)
    with pytest.raises(ConfigError, match="max_batch >= 1"):
        PolicyServer(tiny_policy, batching=Batching(max_batch=0))


def test_concurrent_requests_of_several_robots_share_one_pass_and_keep_their_own_results(tiny_policy, start_server):
    policy = TimedBatchPolicy(tiny_policy, PASS_S)
    _, port = start_server(policy, batching=Batching(max_batch=4, wait_ms=200))
    robots, rng = 4, np.random.default_rng()
    messages = [observation(rng, tiny_policy) for _ in range(robots)]
    messages[2]["images"]["base"] = np.zeros((8, 8), np.uint8)  # one robot sends a bad image
    replies: list = [None] * robots
    together = threading.Barrier(robots)

    def robot(i: int) -> None:
        with client(port) as (ws, _):
            together.wait(10)
            replies[i] = request(ws, messages[i])

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(robots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(policy.passes) == robots and max(policy.passes) >= 2, policy.passes
    for i, (message, reply) in enumerate(zip(messages, replies)):
        if i == 2:  # its named error, in its place; the others are still served
            assert isinstance(reply, str) and "cameras.base" in reply
            continue
        np.testing.assert_array_equal(reply["actions"], message["noise"][:, :reply["actions"].shape[1]])
        timing = reply["server_timing"]
        assert timing["batch_size"] in policy.passes
        assert timing["queue_ms"] < 200 + 2 * PASS_S * 1e3  # the bounded wait plus at most one pass


def test_a_lone_request_waits_at_most_the_batch_wait(tiny_policy, start_server):
    policy = TimedBatchPolicy(tiny_policy, 0.0)
    _, port = start_server(policy, batching=Batching(max_batch=4, wait_ms=150))
    with client(port) as (ws, _):
        reply = request(ws, observation(np.random.default_rng(), tiny_policy))
    assert policy.passes == [1] and reply["server_timing"]["batch_size"] == 1
    assert 140 <= reply["server_timing"]["queue_ms"] < 150 + 150


def test_a_batch_takes_one_request_per_connection_however_many_are_queued():
    """The scheduler alone: a connection with five requests queued and two with one each,
    max_batch 3: every pass is a fair turn (no connection twice), and each connection's requests
    run in the order they were sent."""
    passes: list[list[tuple[str, int]]] = []

    def run_batch(jobs):
        passes.append([(job.client.name, job.payload) for job in jobs])
        return [job.payload for job in jobs]

    async def scenario():
        scheduler = FairScheduler(run_batch, max_batch=3, batch_wait_s=0.0)
        flood, a, b = ClientQueue("flood"), ClientQueue("a"), ClientQueue("b")
        futures = [scheduler.submit(flood, i, 0.0) for i in range(5)]
        futures += [scheduler.submit(a, 0, 0.0), scheduler.submit(b, 0, 0.0)]
        task = asyncio.create_task(scheduler.run())
        results = await asyncio.gather(*futures)
        task.cancel()
        scheduler.shutdown()
        return results

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4, 0, 0]
    for batch in passes:
        names = [name for name, _ in batch]
        assert len(names) == len(set(names)) and len(batch) <= 3
    assert passes[0] == [("flood", 0), ("a", 0), ("b", 0)]
    assert [n for batch in passes for name, n in batch if name == "flood"] == [0, 1, 2, 3, 4]
