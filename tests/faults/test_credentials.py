"""Wrong and expired (rotated, disabled) credentials for each service, on servers of the test's own:
a permanent error naming the service and the setting to fix (never retried, the secret never shown),
a notification, old points untouched, and a complete run once the config has the right credentials."""
from __future__ import annotations

import io
import os
import subprocess

import pytest

from actors.minio.mirror import reconcile
from core.config import Settings
from core.points import Storage
from tests.faults.harness import cli, fingerprint, write_config
from tests.faults.test_services import mysql_target, redis_target, search_target


def component_config(tmp_path, component: str, section: dict, inbox):
    sections = {"mysql": {"enabled": False}, "search": {"enabled": False}, "redis": {"enabled": False},
                component: section}
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "config_files": {"enabled": False},
        "notify": {"urls": [inbox.url], "min_interval_seconds": 0}, **sections})


def expire(component: str, server, how: str) -> str:
    """Make the configured credentials stop working on the server; return the new secret."""
    new = f"rotated-{component}-pw"
    if component == "mysql":
        with server.connection() as conn, conn.cursor() as cur:
            if how == "expired":
                cur.execute("ALTER USER 'root'@'127.0.0.1' PASSWORD EXPIRE")
                return server.password
            cur.execute(f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{new}'")
        server.password = new
    elif component == "redis":
        server.client().config_set("requirepass", new)
        server.password = new
    else:
        server.set_password(new)
    return new


def unexpire(component: str, server) -> None:
    if component == "mysql":
        with server.admin() as conn, conn.cursor() as cur:
            cur.execute(f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{server.password}' PASSWORD EXPIRE NEVER")


@pytest.mark.fault("credentials rotated on the server (MariaDB, Redis, Elasticsearch) or a MySQL password expired",
                   "a permanent error (not retried) names the server and the setting to fix, without the "
                   "secret; the failure is notified; old points are untouched; with the new password in the "
                   "config the next run completes")
@pytest.mark.parametrize("component,how", [("mysql", "rotated"), ("mysql", "expired"), ("redis", "rotated"),
                                           ("search", "rotated")])
def test_rotated_or_expired_credentials_are_a_permanent_error_naming_the_setting(
    tmp_path, request, inbox, component, how
):
    fixture = {"mysql": "private_mariadb", "redis": "private_redis", "search": "private_elasticsearch"}[component]
    server = request.getfixturevalue(fixture)
    target = {"mysql": mysql_target, "redis": redis_target, "search": search_target}[component](server)
    config = component_config(tmp_path, component, target.section, inbox)
    assert cli(config, "backup", "--local").returncode == 0
    before = fingerprint(tmp_path / "backups", ("daily",))
    old = target.section["password"]

    new = expire(component, server, how)
    try:
        check_refused(tmp_path, config, component, inbox, before, old, new)
        unexpire(component, server)
        section = {**target.section, "password": server.password}
        again = cli(component_config(tmp_path, component, section, inbox), "backup", "--local")
        assert again.returncode == 0, again.stdout
    finally:
        if component == "search" and server.password != "fault-es-pw":
            server.set_password("fault-es-pw")  # the session's server, as the next test expects it


def check_refused(tmp_path, config, component: str, inbox, before: dict, old: str, new: str) -> None:
    done = cli(config, "backup", "--local")
    assert done.returncode == 1
    point = Storage(tmp_path / "backups").points("daily")[-1]
    error = point.manifest().components[component].error
    assert error.startswith("PermanentError"), error
    assert {"mysql": "mysql.password", "redis": "redis.password", "search": "search.password"}[component] in error
    assert old not in error and new not in error and old not in inbox.text() and new not in inbox.text()
    assert any("is failed" in title for title in inbox.titles())
    after = fingerprint(tmp_path / "backups", ("daily",))
    assert {k: after[k] for k in before} == before


@pytest.mark.fault("wrong or disabled MinIO credentials",
                   "the reconcile fails naming the endpoint and the S3 error (InvalidAccessKeyId, "
                   "SignatureDoesNotMatch), removes nothing from the mirror; with good credentials it completes")
@pytest.mark.parametrize("how", ["wrong secret", "disabled user"])
def test_wrong_or_disabled_minio_credentials_remove_nothing(tmp_path, testbed_env, private_minio, how):
    admin = private_minio.client()
    admin.make_bucket("kb-creds")
    admin.put_object("kb-creds", "doc.txt", io.BytesIO(b"document"), 8)
    m = private_minio.settings()
    good = Settings(storage_root=tmp_path / "backups", mysql={"enabled": False}, search={"enabled": False},
                    minio={"endpoint": m.endpoint, "access_key": m.access_key,
                           "secret_key": m.secret_key.get_secret_value(), "timeout_seconds": 5})
    assert reconcile(good).complete
    mirror = tmp_path / "backups" / "minio_mirror" / "kb-creds" / "doc.txt"
    assert mirror.read_bytes() == b"document"

    if how == "wrong secret":
        bad = good.model_copy(update={"minio": good.minio.model_copy(update={"secret_key": "not-the-secret"})})
    else:
        environment = {**os.environ, "MC_HOST_fault": f"http://{m.access_key}:{m.secret_key.get_secret_value()}@{m.endpoint}",
                       "MC_CONFIG_DIR": str(tmp_path / "mc")}
        mc = testbed_env["MC"]
        for args in (["admin", "user", "add", "fault", "backupuser", "backup-secret-1"],
                     ["admin", "policy", "attach", "fault", "readwrite", "--user", "backupuser"],
                     ["admin", "user", "disable", "fault", "backupuser"]):
            done = subprocess.run([mc, *args], env=environment, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
        bad = good.model_copy(update={"minio": good.minio.model_copy(
            update={"access_key": "backupuser", "secret_key": "backup-secret-1"})})
    report = reconcile(bad)
    assert not report.complete and report.removed == 0
    said = " ".join(report.errors)
    assert m.endpoint in said and ("InvalidAccessKeyId" in said or "SignatureDoesNotMatch" in said or "denied" in said.lower()), said
    assert "not-the-secret" not in said and "backup-secret-1" not in said
    assert mirror.read_bytes() == b"document"
    assert reconcile(good).complete
