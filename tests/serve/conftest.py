"""Fixtures of the serve tests: a Policy on the tiny pack and a server factory that always stops."""

from __future__ import annotations

import pytest
from serve_client import FLAT

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
