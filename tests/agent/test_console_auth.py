"""Who may read the metrics port: loopback is open; beyond it the token of metrics.auth_token_file is required."""
from __future__ import annotations

import base64
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from agent.console.auth import TokenAuth, metrics_auth
from agent.console.page import StatusPage
from agent.health import collect
from agent.metrics import MetricsServer
from core.config import ConfigError, MetricsSettings, Settings
from core.points import Storage

SECURITY = {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"}


def fetch(port: int, path: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def token() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def guarded(tmp_path, token) -> Iterator[MetricsServer]:
    storage = Storage(tmp_path / "backups").prepare()
    settings = Settings(storage_root=storage.root)
    server = MetricsServer("127.0.0.1", 0, lambda: collect(settings, storage), page=StatusPage(settings, storage),
                           auth=TokenAuth(token))
    server.start()
    yield server
    server.stop()


def test_without_a_token_the_page_and_the_metrics_answer_401_with_a_basic_challenge(guarded):
    for path in ("/", "/metrics"):
        status, headers, body = fetch(guarded.port, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith('Basic realm="ragflow-backup"')
        assert b"ragflow_backup" not in body and b"<html" not in body


def test_a_wrong_token_is_refused_whatever_the_scheme(guarded, token):
    for authorization in (f"Bearer {token[:-1]}x", f"Bearer {token}{token}", basic("admin", token + "x"), basic(token, ""),
                          "Basic !!!not-base64", f"Token {token}", "Bearer"):
        assert fetch(guarded.port, "/", authorization)[0] == 401, authorization


def test_the_right_token_as_bearer_or_basic_password_opens_the_page(guarded, token):
    for authorization in (f"Bearer {token}", basic("operator", token), basic("", token)):
        status, headers, body = fetch(guarded.port, "/", authorization)
        assert status == 200, authorization
        assert headers["Content-Type"] == "text/html; charset=utf-8" and b"ragflow-backup" in body
    assert fetch(guarded.port, "/metrics", f"Bearer {token}")[0] == 200


def test_an_unauthenticated_health_probe_gets_the_status_alone(guarded, token):
    status, _, body = fetch(guarded.port, "/healthz")
    assert body in (b'{"status": "ok"}', b'{"status": "unhealthy"}') and status in (200, 503)
    assert b"components" in fetch(guarded.port, "/healthz", f"Bearer {token}")[2]


def test_every_answer_carries_the_security_headers(guarded, token):
    for path, authorization in (("/", None), ("/", f"Bearer {token}"), ("/metrics", f"Bearer {token}"), ("/x", f"Bearer {token}")):
        _, headers, _ = fetch(guarded.port, path, authorization)
        assert SECURITY <= set(headers), (path, headers)
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"


def test_loopback_needs_no_token_and_any_other_address_does():
    assert metrics_auth(MetricsSettings(host="127.0.0.1")) is None
    assert metrics_auth(MetricsSettings(host="::1")) is None
    for host in ("0.0.0.0", "192.168.1.20", "::", "nas.example.org"):
        with pytest.raises(ConfigError, match="metrics.auth_token_file"):
            metrics_auth(MetricsSettings(host=host))


def test_a_missing_or_weak_token_file_is_refused_naming_it(tmp_path):
    missing = tmp_path / "missing-token"
    with pytest.raises(ConfigError, match=f"{missing} cannot be read"):
        metrics_auth(MetricsSettings(host="0.0.0.0", auth_token_file=missing))
    short = tmp_path / "short-token"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        metrics_auth(MetricsSettings(host="0.0.0.0", auth_token_file=short))
