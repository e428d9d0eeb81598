"""`ragflow-backup init` writes a config from RAGFlow's .env and copies no secret into it."""
from __future__ import annotations

import yaml
from typer.testing import CliRunner

from agent.cli import app
from core.config import load_settings

RAGFLOW_ENV = """\
# RAGFlow's docker/.env (abridged)
DOC_ENGINE=opensearch
MYSQL_PASSWORD=mysql-secret-1
MYSQL_PORT=5455
MINIO_USER=rag_flow
MINIO_PASSWORD=minio-secret-2
MINIO_PORT=9000
OPENSEARCH_PASSWORD=os-secret-3
OS_PORT=1201
REDIS_PASSWORD=redis-secret-4
REDIS_PORT=6379
"""


def run(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


def ragflow_folder(tmp_path):
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text(RAGFLOW_ENV)
    return folder


def test_init_writes_a_config_that_takes_its_secrets_from_ragflows_env(tmp_path):
    folder = ragflow_folder(tmp_path)
    target = tmp_path / "etc" / "config.yml"
    result = run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "backups"), "-o", str(target))
    assert result.exit_code == 0, result.output
    text = target.read_text()
    for secret in ("mysql-secret-1", "minio-secret-2", "os-secret-3", "redis-secret-4"):
        assert secret not in text
    assert target.stat().st_mode & 0o777 == 0o600
    settings = load_settings(target)
    assert settings.search.engine == "opensearch" and settings.search.url == "http://127.0.0.1:1201"
    assert settings.mysql.port == 5455
    assert settings.mysql.password.get_secret_value() == "mysql-secret-1"
    assert settings.search.password.get_secret_value() == "os-secret-3"
    assert settings.broker.url.get_secret_value() == "redis://:redis-secret-4@127.0.0.1:6379/2"


def test_init_inside_ragflows_compose_network_uses_service_names(tmp_path):
    folder = ragflow_folder(tmp_path)
    target = tmp_path / "config.yml"
    assert run("init", "--ragflow-dir", str(folder), "--network", "compose", "-o", str(target)).exit_code == 0
    config = yaml.safe_load(target.read_text())
    assert config["mysql"]["host"] == "mysql" and config["mysql"]["port"] == 3306
    assert config["search"]["url"] == "http://opensearch01:9201"


def test_init_refuses_a_folder_without_env_and_an_existing_file(tmp_path):
    result = run("init", "--ragflow-dir", str(tmp_path), "-o", str(tmp_path / "c.yml"))
    assert result.exit_code == 2 and ".env not found" in result.output
    folder = ragflow_folder(tmp_path)
    target = tmp_path / "c.yml"
    target.write_text("keep me")
    result = run("init", "--ragflow-dir", str(folder), "-o", str(target))
    assert result.exit_code == 2 and "--force" in result.output
    assert target.read_text() == "keep me"
