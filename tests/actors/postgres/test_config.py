"""The postgres section of the config: RAGFlow keeps its metadata in one database, so one of mysql/postgres."""
from __future__ import annotations

import pytest

from core.config import ConfigError, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "config.yml"
    path.write_text(f"storage_root: {tmp_path / 'b'}\n" + text)
    return path


def test_a_postgres_section_turns_mysql_off_and_takes_its_password_from_ragflows_env(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / ".env").write_text("DB_TYPE=postgres\nPOSTGRES_PASSWORD=from-ragflow\n")
    settings = load_settings(write(tmp_path, f"ragflow_dir: {tmp_path / 'docker'}\npostgres:\n  enabled: true\n"))

    assert settings.postgres.enabled and not settings.mysql.enabled
    assert settings.postgres.password.get_secret_value() == "from-ragflow"


def test_mysql_and_postgres_both_enabled_is_refused_naming_the_fix(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_settings(write(tmp_path, "mysql:\n  enabled: true\npostgres:\n  enabled: true\n"))

    assert "mysql.enabled: false" in str(refused.value)


def test_without_a_postgres_section_mysql_stays_the_metadata_database(tmp_path):
    settings = load_settings(write(tmp_path, ""))

    assert settings.mysql.enabled and not settings.postgres.enabled
