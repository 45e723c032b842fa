"""A pack behind Ray Serve (vla_edge.serve.ray_serve), on a local Ray instance: an HTTP request
with an observation gets the chunk `Policy.infer` gives on the same noise; the openpi websocket
protocol works through Ray Serve's proxy (metadata, chunks, reset), so `vla-edge eval --pack
ws://...` scores the deployment like the pack; keys and bad requests are refused by name."""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from serve_client import observation
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from vla_edge.errors import ConfigError
from vla_edge.policy import load_policy
from vla_edge.serve import ApiKey, wire

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
ray_serve = pytest.importorskip("vla_edge.serve.ray_serve")

KEY = "k" * 8 + "ray-serve-test-key"
SEED = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def deployed(tiny_pack_dir):
    """(port, local Policy on the same pack): Ray Serve on 127.0.0.1, one replica, API key on."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ray_serve.ReplicaConfig(pack=str(tiny_pack_dir), target="reference", seed=SEED, api_key=ApiKey(KEY, "test"))
    serve.run(ray_serve.application(config), route_prefix="/")
    policy = load_policy(tiny_pack_dir, target="reference", seed=SEED)
    yield port, policy
    policy.close()
    serve.shutdown()
    ray.shutdown()


def _post(port, body: bytes, key: str | None = KEY, path="/infer"):
    headers = {"Content-Type": ray_serve.MSGPACK, **({"Authorization": f"Api-Key {key}"} if key else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _expected(policy, message):
    from vla_edge.types import Observation

    obs = Observation(cameras=message["images"], state=message["state"], prompt=message["prompt"], timestamp=0.0)
    return policy.infer(obs, noise=message["noise"]).actions


# Ray and Ray Serve's controller, proxy and replica take ~30 s to start on 2 shared cores
@pytest.mark.slow
def test_http_chunk_equals_policy_infer_on_the_same_noise(deployed):
    port, policy = deployed
    rng = np.random.default_rng(20)
    for _ in range(2):
        message = observation(rng, policy)
        status, body = _post(port, wire.packb(message))
        assert status == 200, body
        reply = wire.unpackb(body)
        expected = _expected(policy, message)
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(reply["actions"], expected, rtol=1e-5, atol=1e-6)
        assert reply["names"] == list(policy.info.action_names) and reply["server_timing"]["infer_ms"] > 0
    status, body = _post(port, b"", path="/metadata")  # POST is not a route: 405
    assert status == 405


@pytest.mark.slow
def test_keys_and_bad_requests_are_refused_by_name(deployed):
    port, policy = deployed
    message = observation(np.random.default_rng(21), policy)
    for key in (None, KEY[:-1], KEY + "x"):
        status, body = _post(port, wire.packb(message), key=key)
        assert status == 401 and b"Api-Key" in body and b"tiny" not in body
    del message["state"]
    status, body = _post(port, wire.packb(message))
    assert status == 400 and b"state" in body
    status, body = _post(port, b"\xc1not msgpack")
    assert status == 400 and b"msgpack" in body
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/", open_timeout=30, additional_headers={"Authorization": "Api-Key wrong-key"})
    assert refused.value.response.status_code == 401  # the ASGI denial-response extension reaches the client


@pytest.mark.slow
def test_openpi_websocket_protocol_through_ray_serve(deployed):
    port, policy = deployed
    rng = np.random.default_rng(22)
    with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None, open_timeout=30,
                 additional_headers={"Authorization": f"Api-Key {KEY}"}) as ws:
        meta = wire.unpackb(ws.recv(timeout=30))
        assert meta["server"] == "vla-edge" and meta["engine"] == "ray-serve"
        assert tuple(meta["noise_shape"]) == tuple(policy.noise_shape)
        message = observation(rng, policy)
        ws.send(wire.packb(message))
        np.testing.assert_allclose(wire.unpackb(ws.recv(timeout=120))["actions"], _expected(policy, message),
                                   rtol=1e-5, atol=1e-6)
        # without noise: the connection's own generator, seeded with the deployment's seed; a
        # reset restarts it, so the same observation gives the same chunk again
        del message["noise"]
        first = []
        for _ in range(2):
            ws.send(wire.packb({"__ctrl__": "reset"}))
            assert wire.unpackb(ws.recv(timeout=30)) == {"ok": True}
            ws.send(wire.packb(message))
            first.append(wire.unpackb(ws.recv(timeout=120))["actions"])
        np.testing.assert_array_equal(first[0], first[1])
        expected = _expected(policy, {**message, "noise": np.random.default_rng(SEED).standard_normal(
            policy.noise_shape).astype(np.float32)})
        np.testing.assert_allclose(first[0], expected, rtol=1e-5, atol=1e-6)
        ws.send(wire.packb({"images": {}, "prompt": "x"}))
        answer = ws.recv(timeout=30)
        assert isinstance(answer, str) and answer.startswith("error:") and "state" in answer


def test_build_app_arguments_are_checked():
    with pytest.raises(ConfigError, match="pack"):
        ray_serve.build_app({})
    with pytest.raises(ConfigError, match="unknown|expected some of"):
        ray_serve.build_app({"pack": "p", "replica": "2"})
    with pytest.raises(ConfigError, match="replicas"):
        ray_serve.build_app({"pack": "p", "replicas": "two"})
    with pytest.raises(ConfigError, match="--ray-replicas"):
        ray_serve.build_app({"pack": "p", "replicas": "0"})


def test_missing_ray_names_the_extra(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.delitem(sys.modules, "vla_edge.serve.ray_serve")  # restored after the test
    with pytest.raises(ConfigError, match=r"--ray-serve.*pip install 'vla-edge\[ray\]'"):
        importlib.import_module("vla_edge.serve.ray_serve")
