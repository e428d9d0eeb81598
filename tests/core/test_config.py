"""Loading settings: the file, environment overrides, secrets from RAGFlow's .env, and errors with paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_follow_ragflows_layout(tmp_path):
    settings = load_settings(write(tmp_path / "c.yml", "storage_root: /srv/backups\n"))
    assert settings.mysql.database == "rag_flow"
    assert settings.redis.db == 1 and settings.redis.enabled is False
    assert not settings.broker.url.get_secret_value().endswith("/1"), "the broker must not share RAGFlow's DB 1"


def test_every_bad_key_is_reported_with_its_path_and_the_file(tmp_path):
    path = write(tmp_path / "c.yml", "mysql:\n  port: 70000\n  mode: ftp\nsearch:\n  engnie: opensearch\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert "At 'mysql.port': Input should be less than or equal to 65535" in message
    assert "At 'mysql.mode':" in message and "'tcp' or 'docker'" in message
    assert "At 'search.engnie': unknown option" in message


def test_a_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="ragflow-backup init"):
        load_settings(tmp_path / "absent.yml")


def test_broken_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = write(tmp_path / "c.yml", "mysql: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)


def test_environment_variables_override_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGFLOW_BACKUP_MYSQL__PORT", "3307")
    settings = load_settings(write(tmp_path / "c.yml", "mysql:\n  port: 5455\n  host: db\n"))
    assert settings.mysql.port == 3307
    assert settings.mysql.host == "db"


def test_secrets_left_out_of_the_file_come_from_ragflows_env(tmp_path):
    ragflow = tmp_path / "ragflow" / "docker"
    ragflow.mkdir(parents=True)
    write(ragflow / ".env", "MYSQL_PASSWORD=s3cret\nMINIO_USER=rag_flow\nMINIO_PASSWORD=m1n10\nELASTIC_PASSWORD=el4stic\n")
    settings = load_settings(write(tmp_path / "c.yml", "ragflow_dir: ragflow/docker\nstorage_root: backups\n"))
    assert settings.ragflow_dir == ragflow.resolve()
    assert settings.storage_root == (tmp_path / "backups").resolve()
    assert settings.mysql.password.get_secret_value() == "s3cret"
    assert settings.minio.access_key == "rag_flow"
    assert settings.search.password.get_secret_value() == "el4stic"
    assert "s3cret" not in repr(settings), "secrets must not show in reprs or logs"


def test_a_password_in_our_file_wins_over_ragflows_env(tmp_path):
    ragflow = tmp_path / "docker"
    ragflow.mkdir()
    write(ragflow / ".env", "MYSQL_PASSWORD=from-env\n")
    settings = load_settings(write(tmp_path / "c.yml", f"ragflow_dir: {ragflow}\nmysql:\n  password: from-file\n"))
    assert settings.mysql.password.get_secret_value() == "from-file"


def test_a_broker_url_without_a_password_takes_ragflows_redis_password(tmp_path):
    ragflow = tmp_path / "docker"
    ragflow.mkdir()
    write(ragflow / ".env", "REDIS_PASSWORD=p@ss/word\n")
    settings = load_settings(write(tmp_path / "c.yml", f"ragflow_dir: {ragflow}\nbroker:\n  url: redis://redis:6379/2\n"))
    assert settings.broker.url.get_secret_value() == "redis://:p%40ss%2Fword@redis:6379/2"


def test_a_schedule_that_is_not_cron_is_refused_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"At 'schedule.backup': Value error, 'every day' is not a cron expression"):
        load_settings(write(tmp_path / "c.yml", "schedule:\n  backup: every day\n"))
    assert load_settings(write(tmp_path / "d.yml", "schedule:\n  verify: ''\n")).schedule.verify == ""
