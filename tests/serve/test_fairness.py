"""`vla-edge serve` under load: connections take turns (a flooding client cannot push a robot's
wait past one forward pass), replies keep request order, per-connection limits hold, each
connection has its own noise sequence, and every connection is logged from open to close.

A stand-in Policy whose pass takes a known time (serve_client.TimedPolicy) makes the timing
deterministic; the bounds below are stated in passes of that length."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from serve_client import TimedPolicy, client, observation, request
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from vla_edge.errors import ConfigError
from vla_edge.serve import ConnectionLimits, wire

PASS_S = 0.08


def _cols(policy, noise):
    return noise[:, :len(policy.info.action_names)]


def test_a_flooding_client_cannot_push_another_clients_wait_beyond_one_pass(tiny_policy, start_server):
    """Bound: with one other connection busy, a request waits at most for the pass in progress
    (PASS_S), asserted with the same again as slack for a loaded machine. A shared first-come
    queue would make it wait behind all of the flooder's requests in flight (8 passes here)."""
    policy = TimedPolicy(tiny_policy, PASS_S)
    _, port = start_server(policy, limits=ConnectionLimits(max_in_flight=8))
    rng = np.random.default_rng()
    flooding, flooder_waits = threading.Event(), []

    def flood() -> None:
        with client(port) as (ws, _):
            for _ in range(8):
                ws.send(wire.packb(observation(rng, tiny_policy)))
            flooding.set()
            for _ in range(24):  # keep 8 in flight: one more request for every reply
                flooder_waits.append(wire.unpackb(ws.recv(timeout=30))["server_timing"]["queue_ms"])
                ws.send(wire.packb(observation(rng, tiny_policy)))
            for _ in range(8):
                ws.recv(timeout=30)

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        assert flooding.wait(10)
        time.sleep(2 * PASS_S)
        with client(port) as (ws, _):
            robot_waits = [request(ws, observation(rng, tiny_policy))["server_timing"]["queue_ms"] for _ in range(6)]
    finally:
        flooder.join(60)
    assert max(flooder_waits) > 4 * PASS_S * 1e3  # the flood was real: the flooder's own requests queued
    assert max(robot_waits) < 2 * PASS_S * 1e3, robot_waits


def test_pipelined_replies_keep_request_order_and_reading_stops_at_max_in_flight(tiny_policy, start_server):
    policy = TimedPolicy(tiny_policy, PASS_S)
    _, port = start_server(policy, limits=ConnectionLimits(max_in_flight=2))
    rng = np.random.default_rng()
    messages = [observation(rng, tiny_policy) for _ in range(6)]
    with client(port) as (ws, _):
        t0 = time.monotonic()
        for message in messages:
            ws.send(wire.packb(message))
        replies = [wire.unpackb(ws.recv(timeout=30)) for _ in messages]
        elapsed = time.monotonic() - t0
    for message, reply in zip(messages, replies):
        np.testing.assert_array_equal(reply["actions"], _cols(policy, message["noise"]))
    # All six were sent at once and took six passes, but the server read each one only when a
    # slot was free, so none waited in its queue longer than about the one pass ahead of it.
    assert elapsed >= 6 * PASS_S
    assert max(r["server_timing"]["queue_ms"] for r in replies) < 1.8 * PASS_S * 1e3


def test_each_connection_has_its_own_noise_sequence_from_the_seed(tiny_policy, start_server):
    """tiny_policy was loaded with seed 3: every connection's sequence is a seed-3 generator's,
    however the two connections' requests interleave; a control may pick another seed."""
    policy = TimedPolicy(tiny_policy, 0.0)
    _, port = start_server(policy)
    rng = np.random.default_rng()

    def expected(seed, n):
        gen = np.random.default_rng(seed)
        return [_cols(policy, gen.standard_normal(policy.noise_shape).astype(np.float32)) for _ in range(n)]

    with client(port) as (a, _), client(port) as (b, _):
        message = observation(rng, tiny_policy, noise=False)
        got_a, got_b = [], []
        for i in range(3):
            got_a.append(request(a, message)["actions"])
            if i != 1:
                got_b.append(request(b, message)["actions"])
        assert request(b, {"__ctrl__": "episode_start", "seed": 11}) == {"ok": True}
        seeded = [request(b, message)["actions"] for _ in range(2)]
        for bad, named in (({"__ctrl__": "reset", "seed": -1}, "seed"), ({"__ctrl__": "episode_end", "seed": 2}, "seed"),
                           ({"__ctrl__": "reset", "seed": "x"}, "seed")):
            answer = request(b, bad)
            assert isinstance(answer, str) and f"'{named}'" in answer
    for got, want in ((got_a, expected(3, 3)), (got_b, expected(3, 2)), (seeded, expected(11, 2))):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_idle_connections_are_closed_but_not_while_a_reply_is_owed(tiny_policy, start_server):
    policy = TimedPolicy(tiny_policy, 0.5)  # a pass longer than the idle timeout
    _, port = start_server(policy, limits=ConnectionLimits(idle_timeout_s=0.3))
    with client(port) as (ws, _):
        assert "actions" in request(ws, observation(np.random.default_rng(), tiny_policy))
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.reason == "idle timeout" and time.monotonic() - t0 < 5


def test_oversized_messages_close_the_connection_with_1009(tiny_policy, start_server, caplog):
    _, port = start_server(TimedPolicy(tiny_policy, 0.0), limits=ConnectionLimits(max_message_bytes=2**20))
    caplog.set_level(logging.INFO, logger="vla_edge.serve")
    with client(port) as (ws, _):
        ws.send(b"\x00" * (2 * 2**20))
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009
    _wait_for_log(caplog, "server closed (1009")


def test_connections_beyond_the_limit_are_refused_with_503(tiny_policy, start_server):
    _, port = start_server(TimedPolicy(tiny_policy, 0.0), limits=ConnectionLimits(max_connections=1))
    with client(port):
        with pytest.raises(InvalidStatus) as refused:
            with client(port):
                pass
        assert refused.value.response.status_code == 503
    deadline = time.monotonic() + 5
    while True:  # the closed connection leaves the server's table right after its close handshake
        try:
            with client(port) as (_, meta):
                assert meta["limits"]["max_connections"] == 1
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_closed_connections_queued_requests_are_not_run(tiny_policy, start_server):
    policy = TimedPolicy(tiny_policy, PASS_S)
    _, port = start_server(policy, limits=ConnectionLimits(max_in_flight=8))
    rng = np.random.default_rng()
    with client(port) as (ws, _):
        for _ in range(8):
            ws.send(wire.packb(observation(rng, tiny_policy)))
        time.sleep(PASS_S / 2)
    time.sleep(4 * PASS_S)
    assert 1 <= len(policy.passes) <= 3  # the pass in progress (and at most a couple racing the close)


def _wait_for_log(caplog, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record.getMessage()
        time.sleep(0.02)
    raise AssertionError(f"no log line with {text!r} in {[r.getMessage() for r in caplog.records]}")


def test_connection_log_lines_say_who_when_how_many_and_why_closed(tiny_policy, start_server, caplog):
    caplog.set_level(logging.INFO, logger="vla_edge.serve")
    _, port = start_server(TimedPolicy(tiny_policy, 0.0))
    rng = np.random.default_rng()
    with client(port) as (ws, _):
        peer = "%s:%d" % ws.local_address[:2]
        request(ws, observation(rng, tiny_policy))
        request(ws, observation(rng, tiny_policy))
        assert request(ws, {"__ctrl__": "nope"}).startswith("error: ")
    connected = _wait_for_log(caplog, f"client {peer} connected")
    closed = _wait_for_log(caplog, f"client {peer} closed after")
    assert "1 connection(s) open" in connected
    assert "2 chunk(s), 1 error reply(ies): client closed (1000)" in closed


@pytest.mark.parametrize("field, option", [("max_in_flight", "--max-in-flight"), ("max_connections", "--max-connections"),
                                           ("max_message_bytes", "--max-message-mb"), ("idle_timeout_s", "--idle-timeout")])
def test_limits_that_would_lock_every_client_out_are_refused_by_name(field, option):
    with pytest.raises(ConfigError, match=f"{option} \\(ConnectionLimits.{field}\\): must be positive, got 0"):
        ConnectionLimits(**{field: 0})
