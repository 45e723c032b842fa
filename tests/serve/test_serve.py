"""`vla-edge serve` over a real websocket: the chunks equal the Policy's own on the same inputs,
bad requests get a text error and the connection stays usable, a failing policy closes it, and
the wire format is byte for byte openpi's msgpack-numpy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import msgpack
import numpy as np
import pytest
from serve_client import FLAT
from serve_client import client as _client
from serve_client import observation as _observation
from serve_client import request as _request
from websockets.exceptions import ConnectionClosedError

from vla_edge.policy import load_policy
from vla_edge.serve import PolicyServer, wire


@pytest.fixture(scope="module")
def server(tiny_pack_dir):
    srv = PolicyServer(load_policy(tiny_pack_dir, target="reference", seed=3), FLAT, host="127.0.0.1", port=0)
    port = srv.start()
    yield srv, port
    srv.stop()


@pytest.fixture(scope="module")
def oracle(tiny_pack_dir):
    """A second Policy on the same pack: what the server must reproduce."""
    return load_policy(tiny_pack_dir, target="reference")


def test_metadata_describes_the_pack_and_says_there_is_no_safety_filter(server, oracle):
    _, port = server
    with _client(port) as (_, meta):
        pass
    assert meta["server"] == "vla-edge" and meta["horizon"] == oracle.info.horizon
    assert meta["action_names"] == list(oracle.info.action_names)
    assert meta["noise_shape"] == list(oracle.noise_shape)
    assert "safety filter is not in this path" in meta["safety"]


def test_chunks_equal_the_policy_on_the_same_inputs_in_both_request_layouts(server, oracle):
    from vla_edge.types import Observation

    _, port = server
    rng = np.random.default_rng()
    with _client(port) as (ws, _):
        for _ in range(2):
            msg = _observation(rng, oracle)
            expected = oracle.infer(Observation(cameras=msg["images"], state=msg["state"], prompt=msg["prompt"]),
                                    msg["noise"]).actions
            got = _request(ws, msg)
            assert got["actions"].dtype == np.float32 and got["actions"].shape == expected.shape
            # Same code, same inputs, same process: only BLAS thread scheduling could differ.
            np.testing.assert_allclose(got["actions"], expected, rtol=0, atol=1e-6)
            assert got["names"] == list(oracle.info.action_names) and got["server_timing"]["infer_ms"] > 0
            flat = {"observation/image": msg["images"]["base"], "observation/wrist_image": msg["images"]["wrist"],
                    "observation/state": msg["state"], "prompt": msg["prompt"], "noise": msg["noise"]}
            np.testing.assert_allclose(_request(ws, flat)["actions"], expected, rtol=0, atol=1e-6)


def test_episode_start_restarts_the_seeded_noise_sequence(server, oracle):
    _, port = server
    rng = np.random.default_rng()
    msg = _observation(rng, oracle)
    del msg["noise"]
    with _client(port) as (ws, _):
        assert _request(ws, {"__ctrl__": "episode_start"}) == {"ok": True}
        first = [_request(ws, msg)["actions"] for _ in range(2)]
        assert _request(ws, {"__ctrl__": "reset"}) == {"ok": True}
        again = [_request(ws, msg)["actions"] for _ in range(2)]
    assert not np.array_equal(first[0], first[1])  # fresh noise per request
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("message, names", [
    ({"images": {}, "state": np.ones(6), "prompt": "x"}, "cameras.base"),
    ({"observation/image": np.zeros((8, 8, 3), np.uint8), "prompt": "x"}, "observation/state"),
    ({"images": {"base": np.zeros((8, 8), np.uint8)}, "state": np.ones(6), "prompt": "x"}, "cameras.base"),
    ({"images": {"base": np.zeros((8, 8, 3), np.uint8)}, "state": np.array([1.0, np.nan, 0, 0, 0, 0]), "prompt": "x"}, "state"),
    ({"images": {"base": np.zeros((8, 8, 3), np.uint8)}, "state": np.ones(6), "prompt": "x",
      "noise": np.ones((2, 2), np.float32)}, "noise"),
    ({"__ctrl__": "shutdown"}, "__ctrl__"),
    ([1, 2, 3], "message"),
])
def test_bad_requests_get_a_text_error_naming_the_field_and_the_connection_stays_usable(server, oracle, message, names):
    _, port = server
    with _client(port) as (ws, _):
        answer = _request(ws, message)
        assert isinstance(answer, str) and answer.startswith("error: ") and names in answer
        good = _observation(np.random.default_rng(), oracle)
        assert _request(ws, good)["actions"].shape == (oracle.info.horizon, len(oracle.info.action_names))


def test_undecodable_and_unsafe_payloads_are_refused(server):
    _, port = server
    with _client(port) as (ws, _):
        ws.send(b"\xc1 not msgpack")
        assert ws.recv(timeout=10).startswith("error: not a msgpack message")
        ws.send("a text frame")
        assert "binary msgpack" in ws.recv(timeout=10)
        object_array = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]})
        ws.send(object_array)  # object dtype would mean Python objects: never decoded
        assert "not accepted" in ws.recv(timeout=10)


def test_health_endpoint_answers_while_serving(server):
    _, port = server
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200 and response.read() == b"OK\n"


def test_a_failing_policy_closes_the_connection_with_an_error_never_zeros(tiny_pack_dir):
    policy = load_policy(tiny_pack_dir, target="reference")

    def broken(obs, noise=None):
        raise RuntimeError("backend lost its weights")

    policy.infer = broken
    srv = PolicyServer(policy, host="127.0.0.1", port=0)
    port = srv.start()
    try:
        with _client(port) as (ws, _):
            msg = {"images": {"base": np.zeros((8, 8, 3), np.uint8)}, "state": np.ones(6), "prompt": "x"}
            answer = _request(ws, msg)
            assert isinstance(answer, str) and "inference failed" in answer and "lost its weights" in answer
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1011
    finally:
        srv.stop()


def test_wire_format_is_byte_for_byte_openpis_msgpack_numpy():
    """openpi's encoding (openpi_client/msgpack_numpy.py): an array is the map
    {b"__ndarray__": True, b"data": tobytes(), b"dtype": dtype.str, b"shape": shape}."""
    rng = np.random.default_rng()
    for array in (rng.standard_normal((3, 4)).astype(np.float32), rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
                  rng.integers(-9, 9, 6).astype(np.int64), np.array([True, False])):
        theirs = msgpack.packb({b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str,
                                b"shape": array.shape})
        assert wire.packb(array) == theirs
        back = wire.unpackb(theirs)
        assert back.dtype == array.dtype and np.array_equal(back, array)
    scalar = np.float32(rng.standard_normal())
    assert wire.packb(scalar) == msgpack.packb({b"__npgeneric__": True, b"data": scalar.item(), b"dtype": scalar.dtype.str})
    with pytest.raises(wire.WireError):
        wire.packb(np.array([1 + 2j]))


def test_cli_serves_until_interrupted(tiny_pack_dir):
    proc = subprocess.Popen([sys.executable, "-m", "vla_edge.cli.main", "serve", "--pack", str(tiny_pack_dir),
                             "--host", "127.0.0.1", "--port", "0", "--image", "base=observation/image"],
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = ""
        while "serving pack" not in line:
            line = proc.stderr.readline()
            assert line, "server exited before serving"
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])
        with _client(port) as (ws, meta):
            answer = _request(ws, {"observation/image": np.zeros((8, 8, 3), np.uint8),
                                   "observation/state": np.linspace(-0.5, 0.5, len(meta["state_names"])), "prompt": "x"})
        assert answer["actions"].shape == (meta["horizon"], len(meta["action_names"]))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopped after 1 chunk(s)" in err
    finally:
        proc.kill()


def test_cli_refuses_a_malformed_image_mapping_before_listening(tiny_pack_dir):
    result = subprocess.run([sys.executable, "-m", "vla_edge.cli.main", "serve", "--pack", str(tiny_pack_dir),
                             "--image", "observation/image"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--image" in result.stderr and "CAMERA=REQUEST_KEY" in result.stderr
