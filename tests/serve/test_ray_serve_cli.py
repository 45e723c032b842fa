"""`vla-edge serve --ray-serve` as a user runs it: a key file and a self-signed certificate, one
HTTPS request answered with `Policy.infer`'s chunk on the same noise, Ctrl-C stops it."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from serve_client import observation
from tls_cert import make_self_signed

from vla_edge.policy import load_policy
from vla_edge.serve import wire
from vla_edge.types import Observation

pytest.importorskip("ray.serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # Ray and Ray Serve start in the subprocess: ~30 s on 2 shared cores
def test_cli_serves_through_ray_serve_with_key_and_tls(tmp_path, tiny_pack_dir):
    cert, key_pem = make_self_signed(tmp_path)
    key = secrets.token_urlsafe(24)
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "vla_edge.cli.main", "serve", "--ray-serve", "--pack", str(tiny_pack_dir),
                             "--target", "reference", "--seed", "2", "--port", str(port), "--api-key-file", str(key_file),
                             "--tls-cert", str(cert), "--tls-key", str(key_pem)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    context = ssl.create_default_context(cafile=str(cert))
    policy = load_policy(tiny_pack_dir, target="reference")
    try:
        deadline, healthy = time.monotonic() + 240, False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=5) as r:
                    healthy = r.status == 200
            except (urllib.error.URLError, OSError):
                time.sleep(1)
        assert healthy, f"no Ray Serve proxy on {port}: exit {proc.poll()}"
        message = observation(np.random.default_rng(30), policy)
        request = urllib.request.Request(f"https://127.0.0.1:{port}/infer", data=wire.packb(message),
                                         headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/msgpack"})
        with urllib.request.urlopen(request, context=context, timeout=120) as r:
            actions = wire.unpackb(r.read())["actions"]
        obs = Observation(cameras=message["images"], state=message["state"], prompt=message["prompt"], timestamp=0.0)
        np.testing.assert_allclose(actions, policy.infer(obs, noise=message["noise"]).actions, rtol=1e-5, atol=1e-6)
    finally:
        policy.close()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "through Ray Serve" in err and "predictions only" in err, err[-2000:]
    assert "stopped" in err and proc.returncode == 0, err[-2000:]
