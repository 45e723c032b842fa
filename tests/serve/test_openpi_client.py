"""The published openpi-client 0.1.2, in its own environment (it pins numpy < 2), against
`vla-edge serve` with an API key: given `api_key=` it is served (ws:// and wss://), with a wrong
key it is refused with 401, and a text error reply reaches it as RuntimeError."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from openpi_env import EnvironmentUnavailable, openpi_client_python
from serve_client import TimedPolicy

from vla_edge.serve import ApiKey, tls_context

KEY = "openpi-test-key-0123456789"
PROBE = Path(__file__).with_name("openpi_client_probe.py")


@pytest.fixture(scope="module")
def openpi_python():
    try:
        return openpi_client_python()
    except EnvironmentUnavailable as exc:
        pytest.skip(f"cannot build the openpi-client 0.1.2 environment here (needs PyPI): {exc}")


def _probe(python, uri, key, *extra, env=None):
    done = subprocess.run([str(python), str(PROBE), uri, key, *extra], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_openpi_client_with_api_key_is_served_and_a_wrong_key_is_refused(openpi_python, tiny_policy, start_server):
    _, port = start_server(tiny_policy, api_key=ApiKey(KEY, "test"))
    uri = f"ws://127.0.0.1:{port}"
    served = _probe(openpi_python, uri, KEY)
    assert served["numpy"].startswith("1.")  # really openpi's environment, not ours
    actions = np.asarray(served["actions"])
    assert served["pack"] == tiny_policy.info.pack_name and served["dtype"] == "float32"
    assert actions.shape == (tiny_policy.info.horizon, len(tiny_policy.info.action_names))
    assert np.all(np.isfinite(actions)) and served["names"] == list(tiny_policy.info.action_names)
    assert "observation/state" in served["error"]  # the named error, raised by openpi as RuntimeError
    assert _probe(openpi_python, uri, KEY[::-1], "--expect-refused") == {"refused": "InvalidStatus", "status": 401}


def test_openpi_client_over_wss(openpi_python, tiny_policy, start_server, self_signed):
    cert, key = self_signed
    _, port = start_server(TimedPolicy(tiny_policy, 0.0), api_key=ApiKey(KEY, "test"), tls=tls_context(cert, key))
    env = {**os.environ, "SSL_CERT_FILE": str(cert)}  # how a client trusts a private certificate
    served = _probe(openpi_python, f"wss://127.0.0.1:{port}", KEY, env=env)
    noise = np.asarray(served["noise"], dtype=np.float32)
    actions = np.asarray(served["actions"], dtype=np.float32)
    np.testing.assert_array_equal(actions, noise[:, :actions.shape[1]])  # the stand-in echoes the noise
