"""`init` maps DB_TYPE=postgres and its variables from RAGFlow's .env; doctor checks the server with the
component's checks (connection, privileges, pg_dump/pg_restore against the server's version)."""
from __future__ import annotations

import yaml
from typer.testing import CliRunner

from agent.cli import app
from agent.doctor import run_checks
from core.config import load_settings


def run(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


def ragflow_on_postgres(tmp_path, testbed_env, password: str | None = None):
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text(
        "DB_TYPE=postgres\nDOC_ENGINE=elasticsearch\n"
        f"POSTGRES_HOST={testbed_env['PG_HOST']}\nPOSTGRES_PORT={testbed_env['PG_PORT']}\n"
        f"POSTGRES_USER={testbed_env['PG_USER']}\nPOSTGRES_DBNAME={testbed_env['PG_DATABASE']}\n"
        f"POSTGRES_PASSWORD={password or testbed_env['PG_PASSWORD']}\nMINIO_PASSWORD=m\nELASTIC_PASSWORD=e\n")
    return folder


def test_init_configures_postgres_instead_of_mysql_and_copies_no_password(tmp_path, testbed_env):
    folder = ragflow_on_postgres(tmp_path, testbed_env)
    target = tmp_path / "config.yml"

    result = run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "b"), "-o", str(target))

    assert result.exit_code == 0, result.output
    assert "backed up: PostgreSQL" in result.output
    written = yaml.safe_load(target.read_text())
    assert written["mysql"]["enabled"] is False
    assert written["postgres"] == {"enabled": True, "mode": "tcp", "host": testbed_env["PG_HOST"],
                                   "port": int(testbed_env["PG_PORT"]), "user": testbed_env["PG_USER"],
                                   "database": testbed_env["PG_DATABASE"]}
    assert testbed_env["PG_PASSWORD"] not in target.read_text()
    assert load_settings(target).postgres.password.get_secret_value() == testbed_env["PG_PASSWORD"]


def test_doctor_finds_the_server_the_privileges_and_clients_of_its_version(tmp_path, testbed_env):
    folder = ragflow_on_postgres(tmp_path, testbed_env)
    target = tmp_path / "config.yml"
    run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "b"), "-o", str(target))

    checks = {c.name: c for c in run_checks(load_settings(target)) if c.name.startswith("postgres")}

    assert {name: c.status for name, c in checks.items()} == {
        "postgres": "ok", "postgres pg_dump": "ok", "postgres pg_restore": "ok"}, checks
    assert "PostgreSQL 15" in checks["postgres"].detail


def test_doctor_says_a_wrong_password_is_refused_and_how_to_fix_it(tmp_path, testbed_env):
    folder = ragflow_on_postgres(tmp_path, testbed_env, password="not-the-password")
    target = tmp_path / "config.yml"
    run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "b"), "-o", str(target))

    check = next(c for c in run_checks(load_settings(target)) if c.name == "postgres")

    assert check.status == "fail" and "password authentication failed" in check.detail
    assert "POSTGRES_PASSWORD" in check.fix and "not-the-password" not in check.detail


def test_doctor_says_mysql_is_off_because_ragflow_uses_postgresql(tmp_path, testbed_env):
    folder = ragflow_on_postgres(tmp_path, testbed_env)
    target = tmp_path / "config.yml"
    run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "b"), "-o", str(target))

    mysql = next(c for c in run_checks(load_settings(target)) if c.name == "mysql")

    assert (mysql.status, mysql.detail) == ("off", "RAGFlow uses PostgreSQL (the postgres component backs it up)")
    assert "not supported" not in mysql.detail
