"""Who may read the metrics port: anyone on the machine when it listens on loopback; beyond that, only a
client presenting the token of `metrics.auth_token_file` (Bearer, or Basic with any user name and the
token as password, which is what a browser asks for). The token is read from a file, never the config."""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from core.config import ConfigError, MetricsSettings

MAX_TOKEN_BYTES = 4096
MIN_TOKEN_LENGTH = 16
REALM = 'Basic realm="ragflow-backup", charset="UTF-8"'


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class TokenAuth:
    def __init__(self, token: str):
        self._token = token.encode()

    def allows(self, headers: Mapping[str, str]) -> bool:
        """Constant-time comparison of the presented token; any malformed header is a refusal."""
        scheme, _, value = headers.get("authorization", "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            presented = value.encode("utf-8", "surrogateescape")
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            presented = decoded.partition(b":")[2]
        else:
            return False
        return hmac.compare_digest(presented, self._token)


def read_token(path: Path) -> str:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"metrics.auth_token_file {path} is not a regular file")
        if info.st_size > MAX_TOKEN_BYTES:
            raise ConfigError(f"metrics.auth_token_file {path} is larger than {MAX_TOKEN_BYTES} bytes: not a token")
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"metrics.auth_token_file {path} cannot be read ({getattr(exc, 'strerror', None) or exc})"
                          "; create it with e.g. `openssl rand -hex 32 > FILE; chmod 600 FILE`") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(f"metrics.auth_token_file {path} must hold one token of at least {MIN_TOKEN_LENGTH} "
                          "characters without spaces (e.g. `openssl rand -hex 32`)")
    return token


def metrics_auth(metrics: MetricsSettings) -> TokenAuth | None:
    """The port's authentication, or None on loopback without a token file. Refuses (ConfigError) to serve
    beyond loopback without one: the page and the metrics would be open to the network."""
    if metrics.auth_token_file is not None:
        return TokenAuth(read_token(metrics.auth_token_file))
    if not is_loopback(metrics.host):
        raise ConfigError(f"metrics.host is {metrics.host}, beyond this machine, and metrics.auth_token_file is not set: "
                          "the status page and metrics would be open to the network. Set metrics.auth_token_file to a "
                          "0600 file holding a token (`openssl rand -hex 32`), or bind metrics.host to 127.0.0.1 and "
                          "use an SSH tunnel")
    return None
