"""`vla-edge eval --pack ws://... | wss://...`: the same harness scores a `vla-edge serve` server
through openpi's websocket protocol. Against the FAKE environment (fake_libero.py), a server on
the tiny LIBERO pack must give the episodes the pack gives when loaded directly (same seeds, same
noise sent with each request), and a refused key or an untrusted certificate is a named error."""

from __future__ import annotations

import dataclasses
import json
import secrets
import socket

import numpy as np
import pytest
from fake_libero import FakeLiberoEnv
from tls_cert import make_self_signed

from vla_edge.cli.eval_cmd import _server_key
from vla_edge.errors import ConfigError
from vla_edge.eval import conventions as C
from vla_edge.eval.plan import EvalSettings
from vla_edge.eval.records import EPISODES_FILE
from vla_edge.eval.runner import EvalRequest, run_eval
from vla_edge.policy import load_policy
from vla_edge.serve import ApiKey, KeyMap, PolicyServer, tls_context

LIBERO_KEYS = KeyMap(images={C.AGENTVIEW: "observation/image", C.WRIST: "observation/wrist_image"})
# one chunk per episode (the replanning loop is tested in test_harness.py): a tiny-pack pass takes ~1 s here
SETTINGS = EvalSettings(suite="libero_spatial", episodes=2, seed=11, max_steps=5, num_steps_wait=1)
KEY = secrets.token_urlsafe(24)
SAME_EPISODE = ("suite", "task_id", "episode", "init_index", "env_seed", "seed", "success", "steps", "env_steps",
                "inferences")
# The server replies in float32 and the pack's chunk is read as float64 here; the actions the
# environment receives must agree to float32 rounding.
ACTION_TOL = dict(rtol=1e-5, atol=1e-6)


class RecordingEnv(FakeLiberoEnv):
    """The fake environment, keeping every action it was sent (per episode reset)."""

    def __init__(self):
        super().__init__()
        self.actions: list[list[np.ndarray]] = []

    def reset(self, *args, **kwargs):
        self.actions.append([])
        return super().reset(*args, **kwargs)

    def step(self, action):
        self.actions[-1].append(np.array(action, dtype=np.float64))
        return super().step(action)


@pytest.fixture(scope="module")
def libero_pack(tmp_path_factory):
    from vla_edge.families.pi05.synth import synth_pack

    return synth_pack(tmp_path_factory.mktemp("packs") / "libero-tiny", robot="libero", golden=False)


@pytest.fixture
def serve(libero_pack):
    """serve(**PolicyServer options) -> port of a `vla-edge serve` server on the tiny LIBERO pack."""
    policy = load_policy(libero_pack, target="reference", seed=5)
    servers = []

    def start(**options):
        servers.append(PolicyServer(policy, LIBERO_KEYS, host="127.0.0.1", port=0, **options))
        return servers[-1].start()

    yield start
    for server in servers:
        server.stop()
    policy.close()


def _eval(out, packs, settings=SETTINGS, **kw):
    env = RecordingEnv()
    req = EvalRequest(packs=[str(p) for p in packs], settings=settings, out=out, target="reference", tasks=[0], **kw)
    run_eval(req, env_factory=lambda: env)
    return [json.loads(line) for line in (out / EPISODES_FILE).read_text().splitlines()], env


def _assert_same_episodes(a, env_a, b, env_b):
    assert [{k: r[k] for k in SAME_EPISODE} for r in a] == [{k: r[k] for k in SAME_EPISODE} for r in b]
    assert len(env_a.actions) == len(env_b.actions) == SETTINGS.episodes
    for ep_a, ep_b in zip(env_a.actions, env_b.actions):
        assert len(ep_a) == len(ep_b) == SETTINGS.num_steps_wait + SETTINGS.step_budget
        np.testing.assert_allclose(np.stack(ep_a), np.stack(ep_b), **ACTION_TOL)
    # the policy moved the arm (not a constant or zero chunk)
    assert np.std(np.stack(env_a.actions[0])[SETTINGS.num_steps_wait:, :6]) > 1e-3


def test_server_scores_like_the_pack_it_serves(tmp_path, libero_pack, serve):
    port = serve(api_key=ApiKey(KEY, "test"))
    direct, env_direct = _eval(tmp_path / "pack", [libero_pack])
    remote, env_remote = _eval(tmp_path / "ws", [f"ws://127.0.0.1:{port}"], api_key=KEY)
    _assert_same_episodes(direct, env_direct, remote, env_remote)
    assert remote[0]["policy"]["kind"] == "websocket" and remote[0]["policy"]["server"] == "vla-edge"
    # both in one evaluation: the server, probed along the pack's trajectory with the same noise,
    # gives the pack's chunks
    both, _ = _eval(tmp_path / "both", [libero_pack, f"ws://127.0.0.1:{port}"], dataclasses.replace(SETTINGS, episodes=1),
                    api_key=KEY)
    parent = [r for r in both if r["pack"] == "libero-tiny"]
    (label,) = parent[0]["divergence"]
    assert all(r["divergence"][label]["paired_noise"] for r in parent)
    assert max(r["divergence"][label]["chunk_rms_max"] for r in parent) < 1e-5


def test_refused_key_is_a_named_error(tmp_path, serve):
    port = serve(api_key=ApiKey(KEY, "test"))
    with pytest.raises(ConfigError, match=rf"--pack ws://127.0.0.1:{port}.*refused the API key \(HTTP 401"):
        _eval(tmp_path / "wrong", [f"ws://127.0.0.1:{port}"], api_key=KEY[:-1] + ("a" if KEY[-1] != "a" else "b"))
    with pytest.raises(ConfigError, match=r"wants an API key \(HTTP 401\).*--api-key-file"):
        _eval(tmp_path / "none", [f"ws://127.0.0.1:{port}"])
    assert not (tmp_path / "wrong" / EPISODES_FILE).exists() and not (tmp_path / "none" / EPISODES_FILE).exists()


def test_wss_server_with_a_private_certificate(tmp_path, libero_pack, serve, monkeypatch):
    cert, key = make_self_signed(tmp_path)
    port = serve(api_key=ApiKey(KEY, "test"), tls=tls_context(cert, key))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(ConfigError, match="not trusted.*SSL_CERT_FILE"):
        _eval(tmp_path / "untrusted", [f"wss://127.0.0.1:{port}"], api_key=KEY)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    remote, env_remote = _eval(tmp_path / "wss", [f"wss://127.0.0.1:{port}"], api_key=KEY)
    direct, env_direct = _eval(tmp_path / "pack", [libero_pack])
    _assert_same_episodes(direct, env_direct, remote, env_remote)


def test_cli_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("VLA_EDGE_API_KEY", raising=False)
    assert _server_key(None) is None
    monkeypatch.setenv("VLA_EDGE_API_KEY", " from-env ")
    assert _server_key(None) == "from-env"
    path = tmp_path / "key"
    path.write_text(f"{KEY}\nsecond line ignored\n")
    assert _server_key(path) == KEY
    path.write_text("\n")
    with pytest.raises(ConfigError, match=r"--api-key-file .*empty"):
        _server_key(path)
    path.write_text("two words\n")
    with pytest.raises(ConfigError, match="printable ASCII without spaces"):
        _server_key(path)
    with pytest.raises(ConfigError, match="cannot read"):
        _server_key(tmp_path / "missing")


@pytest.mark.slow  # Ray and Ray Serve start in ~30 s on 2 shared cores
def test_pack_behind_ray_serve_scores_like_the_pack(tmp_path, libero_pack):
    """The same harness through Ray Serve's proxy (vla_edge.serve.ray_serve's websocket route)."""
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from vla_edge.serve.ray_serve import ReplicaConfig, application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ReplicaConfig(pack=str(libero_pack), target="reference", keys=LIBERO_KEYS, api_key=ApiKey(KEY, "test"))
        serve.run(application(config), route_prefix="/libero")
        remote, env_remote = _eval(tmp_path / "ray-serve", [f"ws://127.0.0.1:{port}/libero/"], api_key=KEY)
    finally:
        serve.shutdown()
        ray.shutdown()
    direct, env_direct = _eval(tmp_path / "pack", [libero_pack])
    _assert_same_episodes(direct, env_direct, remote, env_remote)
