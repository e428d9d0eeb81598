"""doctor's checks of the binlog archive against a private MariaDB: the replication grant named when missing,
log_bin, binlog_format and the server's expiry judged."""
from __future__ import annotations

from actors.binlog.checks import check_binlog
from tests.actors.binlog.conftest import archive_settings, sql


def by_name(checks) -> dict[str, tuple[str, str, str]]:
    return {check.name: (check.status, check.detail, check.fix) for check in checks}


def test_a_server_with_row_binlog_and_root_passes_every_check(binlog_mariadb, tmp_path):
    checks = by_name(check_binlog(archive_settings(binlog_mariadb, tmp_path / "root")))
    assert {name: status for name, (status, _, _) in checks.items()} == {
        "binlog": "ok", "binlog grant": "ok", "binlog format": "ok", "binlog expiry": "ok"}


def test_a_user_without_the_replication_grants_is_told_which_grant_to_add(binlog_mariadb, tmp_path):
    sql(binlog_mariadb, "CREATE USER 'reader'@'127.0.0.1' IDENTIFIED BY 'reader-pw'",
        "GRANT REPLICATION SLAVE ON *.* TO 'reader'@'127.0.0.1'")
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    settings.mysql.user, settings.mysql.password = "reader", "reader-pw"
    status, detail, fix = by_name(check_binlog(settings))["binlog grant"]
    assert status == "fail" and detail == "user 'reader' lacks BINLOG MONITOR"
    assert fix == "on the server: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'reader'@'<host>'"


def test_statement_format_and_a_short_expiry_are_warnings_with_their_fix(binlog_mariadb, tmp_path):
    sql(binlog_mariadb, "SET GLOBAL binlog_format = 'MIXED'", "SET GLOBAL binlog_expire_logs_seconds = 3600")
    checks = by_name(check_binlog(archive_settings(binlog_mariadb, tmp_path / "root")))
    assert checks["binlog format"][0] == "warn" and "binlog_format=ROW" in checks["binlog format"][2]
    assert checks["binlog expiry"][:2] == ("warn", "the server purges its binary log after 1 h: an agent away "
                                                    "longer leaves a gap")


def test_a_server_without_a_binary_log_is_a_warning_not_a_failure(plain_mariadb, tmp_path):
    checks = by_name(check_binlog(archive_settings(plain_mariadb, tmp_path / "root")))
    assert checks["binlog log_bin"][0] == "warn" and "binlog.enabled: false" in checks["binlog log_bin"][2]


def test_a_disabled_archive_is_off_in_doctor(binlog_mariadb, tmp_path):
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    settings.binlog.enabled = False
    assert by_name(check_binlog(settings))["binlog"][0] == "off"
