"""The operator's commands on RAGFlow-on-PostgreSQL, end to end through the CLI: backup, verify, drill, a
knowledge base's restore, a whole restore and its rollback."""
from __future__ import annotations

from contextlib import closing
from datetime import datetime, timezone

from actors.postgres.restore import kb_rows
from actors.postgres.session import connect
from testbed import settings as testbed_settings
from tests.faults.harness import cli, write_config


def test_backup_verify_drill_and_restores_run_from_the_command_line(tmp_path, testbed_env, pg_dataset):
    cfg = testbed_settings.postgres(testbed_env, database=pg_dataset.database)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False},
        "postgres": {"enabled": True, "host": cfg.host, "port": cfg.port, "user": cfg.user,
                     "password": cfg.password.get_secret_value(), "database": cfg.database}})
    kb = pg_dataset.kb_ids[0]
    with closing(connect(cfg)) as conn:
        before = kb_rows(conn, kb)

    steps = [cli(config, "backup", "--local"), cli(config, "verify"), cli(config, "drill")]
    assert [s.returncode for s in steps] == [0, 0, 0], [s.stdout + s.stderr for s in steps]
    assert "postgres" in steps[2].stdout and "dropped" in steps[2].stdout

    with closing(connect(cfg)) as conn:
        conn.execute("DELETE FROM document WHERE kb_id = %s", (kb,))
    by_kb = cli(config, "restore", "--kb", kb, "--yes")
    assert by_kb.returncode == 0, by_kb.stdout + by_kb.stderr
    assert f"knowledge base {kb}" in by_kb.stdout
    with closing(connect(cfg)) as conn:
        assert kb_rows(conn, kb) == before
        conn.execute("UPDATE knowledgebase SET name = 'after the backup'")

    whole = cli(config, "restore", "--yes")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "as many rows as the backup counted" in whole.stdout
    with closing(connect(cfg)) as conn:
        assert conn.execute("SELECT count(*) FROM knowledgebase WHERE name = 'after the backup'").fetchone()[0] == 0

    undo = cli(config, "restore", "--rollback", "--yes")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    with closing(connect(cfg)) as conn:
        assert conn.execute("SELECT count(*) FROM knowledgebase WHERE name <> 'after the backup'").fetchone()[0] == 0


def test_a_restore_at_a_moment_says_postgresql_comes_back_to_the_points_time(tmp_path, testbed_env, pg_dataset):
    cfg = testbed_settings.postgres(testbed_env, database=pg_dataset.database)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False},
        "postgres": {"enabled": True, "host": cfg.host, "port": cfg.port, "user": cfg.user,
                     "password": cfg.password.get_secret_value(), "database": cfg.database}})
    assert cli(config, "backup", "--local").returncode == 0
    later = datetime.now(timezone.utc).isoformat()

    plan = cli(config, "restore", "--at", later, "--dry-run")

    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "postgres comes back as it was at the point's time" in plan.stdout
    assert "not at --at (no WAL archive)" in plan.stdout
