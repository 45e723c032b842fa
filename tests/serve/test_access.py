"""Who may use `vla-edge serve`: API key at the handshake (openpi's `Authorization: Api-Key`),
TLS (wss://) with a self-signed certificate made here, loopback by default, and the warning
for a port exposed without a key."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from serve_client import TimedPolicy, client, observation, request
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from vla_edge.errors import ConfigError
from vla_edge.serve import ApiKey, load_api_key, tls_context
from vla_edge.serve.access import API_KEY_ENV, exposure_warnings, is_loopback, key_file_warning

KEY = "k3y-for-tests-0123456789abcdef"


def _refusal(port, **kwargs) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        with client(port, **kwargs):
            pass
    return refused.value


def test_no_key_and_wrong_keys_are_refused_with_401_revealing_nothing_about_the_pack(tiny_policy, start_server):
    _, port = start_server(tiny_policy, api_key=ApiKey(KEY, "test"))
    for kwargs in ({}, {"api_key": KEY[:-1] + "X"}, {"api_key": KEY[:-1]}, {"api_key": KEY + "0"}):
        response = _refusal(port, **kwargs).response
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Api-Key"
        body = response.body.decode()
        for secret in (tiny_policy.info.pack_name, tiny_policy.info.quant_recipe, "horizon", "action"):
            assert secret not in body
    # The right key under another scheme is not openpi's header; two headers are not one.
    for headers in ({"Authorization": f"Bearer {KEY}"}, [("Authorization", f"Api-Key {KEY}")] * 2):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}", additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 401


def test_the_right_key_is_served_and_health_needs_none(tiny_policy, start_server):
    _, port = start_server(tiny_policy, api_key=ApiKey(KEY, "test"))
    rng = np.random.default_rng()
    with client(port, api_key=KEY) as (ws, meta):
        assert meta["pack"] == tiny_policy.info.pack_name
        reply = request(ws, observation(rng, tiny_policy))
        assert reply["actions"].shape == (tiny_policy.info.horizon, len(tiny_policy.info.action_names))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.read() == b"OK\n"  # for load balancers; says nothing about the pack


def test_the_key_header_scheme_is_openpis_and_compared_exactly():
    key = ApiKey(KEY, "test")
    assert key.accepts(f"Api-Key {KEY}") and key.accepts(f"api-key  {KEY} ")  # scheme case-insensitive
    for header in (None, "", KEY, f"Api-Key {KEY.upper()}", f"Api-Key{KEY}", f"Bearer {KEY}", "Api-Key "):
        assert not key.accepts(header)
    assert KEY not in repr(key) and KEY not in str(key)


def test_key_sources_file_then_flag_then_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    env = {API_KEY_ENV: "e" * 20}
    assert load_api_key(key_file, environ=env).value == KEY and key_file_warning(key_file) is None
    assert load_api_key(key_arg="a" * 16, environ=env).value == "a" * 16
    assert load_api_key(environ=env) == ApiKey("e" * 20, f"${API_KEY_ENV}")
    assert load_api_key(environ={}) is None
    key_file.chmod(0o644)
    assert "readable by other users" in key_file_warning(key_file)


@pytest.mark.parametrize("content, message", [
    ("short", "at least 16"), ("", "0 characters"), ("with a space inside the key", "without spaces"),
])
def test_weak_or_malformed_keys_are_refused_naming_where_they_came_from(tmp_path, content, message):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    with pytest.raises(ConfigError, match=message) as refused:
        load_api_key(key_file, environ={})
    assert str(key_file) in str(refused.value)
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        load_api_key(environ={API_KEY_ENV: content or " "})


def test_unreadable_or_doubled_key_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_api_key(tmp_path / "missing", environ={})
    with pytest.raises(ConfigError, match="not both"):
        load_api_key(tmp_path / "missing", "a" * 16, environ={})


def test_exposure_warnings_name_the_risk():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("robot-server.lan")
    assert exposure_warnings("127.0.0.1", 8000, has_key=False, has_tls=False) == []
    (open_port,) = exposure_warnings("0.0.0.0", 8000, has_key=False, has_tls=False)
    assert "0.0.0.0:8000 WITHOUT an API key" in open_port and "delay your robot" in open_port
    (clear_text,) = exposure_warnings("10.0.0.5", 8000, has_key=True, has_tls=False)
    assert "unencrypted" in clear_text and "--tls-cert" in clear_text
    assert exposure_warnings("10.0.0.5", 8000, has_key=True, has_tls=True) == []


# ---------------------------------------------------------------------------------------- TLS


def test_tls_round_trip_with_a_self_signed_certificate(tiny_policy, start_server, self_signed):
    cert, key = self_signed
    _, port = start_server(TimedPolicy(tiny_policy, 0.0), tls=tls_context(cert, key), api_key=ApiKey(KEY, "test"))
    trust = ssl.create_default_context(cafile=str(cert))
    rng = np.random.default_rng()
    with client(port, api_key=KEY, ssl=trust) as (ws, meta):
        message = observation(rng, tiny_policy)
        reply = request(ws, message)
    assert meta["pack"] == tiny_policy.info.pack_name
    # The stand-in's chunk is the request's noise: what came back is exactly what was sent.
    np.testing.assert_array_equal(reply["actions"], message["noise"][:, :reply["actions"].shape[1]])
    assert _refusal(port, ssl=trust).response.status_code == 401  # TLS does not replace the key
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust it refuses it
        with client(port, api_key=KEY, ssl=ssl.create_default_context()):
            pass
    with pytest.raises((InvalidMessage, ConnectionError, EOFError, OSError)):  # plain ws:// to a TLS port
        with client(port, api_key=KEY):
            pass


def test_tls_options_are_checked(tmp_path, self_signed):
    cert, key = self_signed
    with pytest.raises(ConfigError, match="--tls-key"):
        tls_context(cert, None)
    with pytest.raises(ConfigError, match="no such file"):
        tls_context(cert, tmp_path / "absent.pem")
    with pytest.raises(ConfigError, match="matching private key"):
        tls_context(key, cert)
    assert tls_context(None, None) is None


# ---------------------------------------------------------------------------------------- CLI


def _serve_cli(tiny_pack_dir, *args, env=None):
    return subprocess.Popen([sys.executable, "-m", "vla_edge.cli.main", "serve", "--pack", str(tiny_pack_dir),
                             "--port", "0", "--image", "base=observation/image", *args],
                            stderr=subprocess.PIPE, text=True, env=env)


def _until_serving(proc) -> str:
    lines: list[str] = []
    while not lines or "serving pack" not in lines[-1]:
        lines.append(proc.stderr.readline())
        assert lines[-1], "server exited before serving:\n" + "".join(lines)
    return "".join(lines)


def test_cli_exposed_without_a_key_warns_and_with_a_key_file_serves_only_key_holders(tiny_pack_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    proc = _serve_cli(tiny_pack_dir, "--host", "0.0.0.0", env=env)
    try:
        seen = _until_serving(proc)
        assert "WITHOUT an API key" in seen and "anyone who can reach this port" in seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    proc = _serve_cli(tiny_pack_dir, "--api-key-file", str(key_file), env=env)
    try:
        seen = _until_serving(proc)
        assert "WITHOUT an API key" not in seen and "unencrypted" not in seen  # loopback: nothing to warn
        port = int(seen.split("ws://127.0.0.1:")[1].split()[0])  # loopback unless told otherwise
        assert _refusal(port).response.status_code == 401
        with client(port, api_key=KEY) as (_, meta):
            assert meta["server"] == "vla-edge"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "refused 127.0.0.1" in err and KEY not in err


def _serve_no_pack(*args, env):
    return subprocess.run([sys.executable, "-m", "vla_edge.cli.main", "serve", "--pack", "/nonexistent/pack", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_refuses_a_weak_key_before_loading_the_pack_and_warns_about_a_key_on_the_command_line():
    weak = _serve_no_pack(env={**os.environ, API_KEY_ENV: "1234"})
    assert weak.returncode == 2 and API_KEY_ENV in weak.stderr and "at least 16" in weak.stderr
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    shown = _serve_no_pack("--api-key", KEY, env=env)
    assert "process list" in shown.stderr and "/nonexistent/pack" in shown.stderr and shown.returncode != 0
