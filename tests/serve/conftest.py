"""Fixtures of the serve tests: a Policy on the tiny pack, a server factory that always stops,
and a self-signed TLS certificate."""

from __future__ import annotations

import datetime
import ipaddress

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


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1/localhost, signed by its own key, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vla-edge test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
