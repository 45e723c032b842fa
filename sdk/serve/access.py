"""Who may talk to `vla-edge serve`: the API key, TLS, and the warning for an exposed port.

Why these choices:
- The key travels the way openpi-client (0.1.2) sends it when given `api_key=`: an HTTP header
  `Authorization: Api-Key <key>` on the websocket handshake. Robot code written against
  `openpi_client.WebsocketClientPolicy` therefore needs no change beyond passing the key.
- The key comes from a file or an environment variable: a command-line argument is visible to every
  user of the machine in the process list (`ps`), so `--api-key` exists only with a warning.
- The comparison is constant-time (`hmac.compare_digest`), so response timing does not leak how
  many leading characters of a guess were right.
- A key shorter than MIN_KEY_CHARS is refused: the point of the key is a port on a real network.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

API_KEY_ENV = "VLA_EDGE_API_KEY"
AUTH_SCHEME = "Api-Key"  # openpi_client.WebsocketClientPolicy: {"Authorization": f"Api-Key {api_key}"}
MIN_KEY_CHARS = 16
KEY_ADVICE = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class ApiKey:
    """The server's key and where it came from (the source is logged; the key never is)."""

    value: str
    source: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"ApiKey(source={self.source!r})"

    def accepts(self, authorization: str | None) -> bool:
        """Does an `Authorization` header value carry this key? The scheme name is matched
        case-insensitively (RFC 9110 §11.1); the key itself exactly, in constant time."""
        if not authorization:
            return False
        scheme, _, offered = authorization.strip().partition(" ")
        if scheme.lower() != AUTH_SCHEME.lower():
            return False
        return hmac.compare_digest(offered.strip().encode(), self.value.encode())


def _checked(value: str, source: str) -> ApiKey:
    value = value.strip()
    if len(value) < MIN_KEY_CHARS:
        raise ConfigError(source, f"the API key has {len(value)} characters; use at least {MIN_KEY_CHARS} ({KEY_ADVICE})")
    if any(ch.isspace() or not ch.isprintable() or not ch.isascii() for ch in value):
        raise ConfigError(source, "the API key must be printable ASCII without spaces (it travels in an HTTP header)")
    return ApiKey(value, source)


def key_file_warning(path: Path) -> str | None:
    """Like ssh with a private key: say so when other users of the machine can read the key."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"API key file {path} is readable by other users (mode {stat.filemode(mode)}); chmod 600 it"
    return None


def load_api_key(key_file: Path | None = None, key_arg: str | None = None,
                 environ: Mapping[str, str] = os.environ) -> ApiKey | None:
    """The key from `--api-key-file`, else `--api-key`, else $VLA_EDGE_API_KEY; None when none is
    given. Giving both command-line forms is refused rather than guessing which one was meant."""
    if key_file is not None and key_arg is not None:
        raise ConfigError("--api-key", "give the key once: --api-key-file or --api-key, not both")
    if key_file is not None:
        try:
            text = Path(key_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--api-key-file {key_file}", f"cannot read the key ({exc})") from exc
        return _checked(text, f"--api-key-file {key_file}")
    if key_arg is not None:
        return _checked(key_arg, "--api-key")
    if environ.get(API_KEY_ENV):
        return _checked(environ[API_KEY_ENV], f"${API_KEY_ENV}")
    return None


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 or newer) from a PEM certificate chain and its private key,
    or None when neither is given. One without the other is refused."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "--tls-cert" if cert is None else "--tls-key"
        raise ConfigError(missing, "TLS needs both --tls-cert (PEM certificate chain) and --tls-key (PEM private key)")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"{option} {path}", "no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}",
                          f"not a PEM certificate chain and its matching private key ({exc.reason or exc})") from exc
    return context


def is_loopback(host: str) -> bool:
    """Is `host` reachable only from this machine? Hostnames other than 'localhost' count as
    exposed: what they resolve to can change."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, port: int, has_key: bool, has_tls: bool) -> list[str]:
    """What an operator must hear before the server listens beyond this machine."""
    if is_loopback(host):
        return []
    if not has_key:
        return [f"listening on {host}:{port} WITHOUT an API key: anyone who can reach this port gets action chunks "
                "from this pack and can queue requests that delay your robot's. Set $" + API_KEY_ENV +
                " or --api-key-file (and --tls-cert/--tls-key), or listen on 127.0.0.1"]
    if not has_tls:
        return [f"listening on {host}:{port} without TLS: the API key and every observation (camera images, state) "
                "cross the network unencrypted; add --tls-cert/--tls-key for wss://"]
    return []
