"""Fixtures of the serve tests: a Policy on the tiny pack, a server factory that always stops,
and a self-signed TLS certificate."""

from __future__ import annotations

import pytest
from serve_client import FLAT
from tls_cert import make_self_signed

from vla_edge.policy import load_policy
from vla_edge.serve import PolicyServer


@pytest.fixture(scope="module")
def tiny_policy(tiny_pack_dir):
    return load_policy(tiny_pack_dir, target="reference", seed=3)


@pytest.fixture
def start_server():
    """start_server(policy, **PolicyServer options) -> (server, port); stopped after the test."""
    servers = []

    def start(policy, **options):
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        srv = PolicyServer(policy, FLAT, **options)
        servers.append(srv)
        return srv, srv.start()

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1/localhost, signed by its own key, valid for a day."""
    return make_self_signed(tmp_path_factory.mktemp("tls"))
