"""`ragflow-backup init` writes a config from RAGFlow's .env and copies no secret into it."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli import app
from core.config import load_settings
from testbed.seed import write_ragflow_dir

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


def test_init_names_a_line_of_env_that_is_not_utf8_and_what_it_set(tmp_path):
    folder = ragflow_folder(tmp_path)
    env = folder / ".env"
    env.write_bytes(env.read_bytes().replace(b"OS_PORT=1201", b"OS_PORT=1201  # caf\xe9"))
    target = tmp_path / "config.yml"

    result = run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "backups"), "-o", str(target))

    said = " ".join(result.output.split())
    assert result.exit_code == 0, said
    assert f"warn: line 9 of {env} (OS_PORT) cannot be read: byte 0xe9 at column 20 is not valid UTF-8" in said
    assert "save the file as UTF-8" in said and "written as if it were not there" in said
    assert "Traceback" not in said and "os-secret-3" not in said


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


# ---------------------------------------------------------------- RAGFlow v0.27's .env and the older layout

def write_env(tmp_path, text: str):
    folder = tmp_path / "docker"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".env").write_text(text)
    return folder


def init_config(tmp_path, folder, *extra: str):
    target = tmp_path / "config.yml"
    result = run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "b"), "-o", str(target),
                 "--force", *extra)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(target.read_text()), result.output


def test_init_takes_mysqls_published_port_from_expose_mysql_port_in_the_v027_layout(tmp_path):
    folder = tmp_path / "docker"
    write_ragflow_dir(folder, {"MYSQL_PORT": "4406", "ES_URL": "http://127.0.0.1:1300",
                               "MINIO_ENDPOINT": "127.0.0.1:9100", "REDIS_PORT": "6390"})
    config, output = init_config(tmp_path, folder)
    assert "MYSQL_PORT=3306" in (folder / ".env").read_text()  # the port inside the compose network
    assert (config["mysql"]["host"], config["mysql"]["port"]) == ("127.0.0.1", 4406)
    assert config["search"]["url"] == "http://127.0.0.1:1300" and config["minio"]["endpoint"] == "127.0.0.1:9100"
    assert config["broker"]["url"] == "redis://127.0.0.1:6390/2" and config["redis"]["port"] == 6390
    assert "infiniflow/ragflow:v0.27.0" in output and "v0.24+" in output
    assert "note: RAGFlow's object store runs pgsty/silo:" in output and "minio.events: false" in output
    inside, _ = init_config(tmp_path, folder, "--network", "compose")
    assert (inside["mysql"]["host"], inside["mysql"]["port"]) == ("mysql", 3306)
    assert inside["minio"]["endpoint"] == "minio:9000" and inside["search"]["url"] == "http://es01:9200"


def test_init_still_reads_the_older_layout_where_mysql_port_is_the_published_one(tmp_path):
    folder = tmp_path / "docker"
    write_ragflow_dir(folder, {"MYSQL_PORT": "5455"}, layout="v0.20")
    config, output = init_config(tmp_path, folder)
    assert (config["mysql"]["host"], config["mysql"]["port"]) == ("127.0.0.1", 5455)
    assert "pre-v0.24" in output and "v0.20.5-slim" in output
    assert "note:" not in output  # MinIO's own image (quay.io/minio/minio)


def test_init_resolves_defaults_written_as_shell_expansions(tmp_path):
    folder = write_env(tmp_path, "DOC_ENGINE=${DOC_ENGINE:-opensearch}\nDB_TYPE=${DB_TYPE:-mysql}\n"
                                 "OS_PORT=1211\nEXPOSE_MYSQL_PORT=3307\nMYSQL_PORT=3306\n")
    config, _ = init_config(tmp_path, folder)
    assert config["search"]["engine"] == "opensearch" and config["search"]["url"] == "http://127.0.0.1:1211"
    assert config["mysql"]["port"] == 3307 and config["mysql"]["enabled"] is True


def test_init_reaches_an_external_mysql_where_ragflow_does(tmp_path):
    folder = write_env(tmp_path, "MYSQL_HOST=db.internal.example\nMYSQL_PORT=3310\nEXPOSE_MYSQL_PORT=3306\n")
    config, _ = init_config(tmp_path, folder)
    assert (config["mysql"]["host"], config["mysql"]["port"]) == ("db.internal.example", 3310)


def test_init_refuses_a_port_that_is_not_a_number_naming_the_variable(tmp_path):
    folder = write_env(tmp_path, "EXPOSE_MYSQL_PORT=33o6\n")
    result = run("init", "--ragflow-dir", str(folder), "-o", str(tmp_path / "c.yml"))
    assert result.exit_code == 2 and "EXPOSE_MYSQL_PORT" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c.yml").exists()


@pytest.mark.parametrize("engine", ["infinity", "oceanbase", "seekdb", "gaussdb"])
def test_init_turns_search_off_for_an_engine_without_snapshots_and_says_so(tmp_path, engine):
    folder = write_env(tmp_path, f"DOC_ENGINE=${{DOC_ENGINE:-{engine}}}\nEXPOSE_MYSQL_PORT=3306\n")
    config, output = init_config(tmp_path, folder)
    assert config["search"] == {"enabled": False}
    assert f"NOT backed up: the search index (DOC_ENGINE={engine})" in output and "re-parse" in output
    assert config["mysql"]["enabled"] is True and config["minio"].get("enabled", True) is True
    settings = load_settings(tmp_path / "config.yml")
    assert settings.search.enabled is False
    assert f"# NOT backed up: the search index (DOC_ENGINE={engine})" in (tmp_path / "config.yml").read_text()


def test_init_leaves_out_a_metadata_database_other_than_mysql_or_postgres(tmp_path):
    folder = write_env(tmp_path, "DB_TYPE=gaussdb\n")
    config, output = init_config(tmp_path, folder)
    assert config["mysql"]["enabled"] is False and "postgres" not in config
    assert "NOT backed up: the metadata database (DB_TYPE=gaussdb)" in output


def test_init_mirrors_an_s3_store_by_reconcile_alone_and_leaves_out_other_stores(tmp_path):
    folder = write_env(tmp_path, "STORAGE_IMPL=AWS_S3\n")
    config, output = init_config(tmp_path, folder)
    assert config["minio"]["events"] is False and config["minio"]["enabled"] is False
    assert "reconcile alone" in output and "minio.endpoint" in output
    folder = write_env(tmp_path, "STORAGE_IMPL=OSS\n")
    config, output = init_config(tmp_path, folder)
    assert config["minio"]["enabled"] is False and "NOT backed up: uploaded files (STORAGE_IMPL=OSS)" in output


@pytest.mark.parametrize("layout", ["v0.27", "v0.20"])
def test_init_then_doctor_passes_on_a_copy_of_ragflows_docker_folder(tmp_path, testbed_env, layout):
    folder = tmp_path / "ragflow" / "docker"
    write_ragflow_dir(folder, testbed_env, layout)  # RAGFlow's files, its .env pointed at the test bed's ports
    target = tmp_path / "config.yml"
    result = run("init", "--ragflow-dir", str(folder), "--storage-root", str(tmp_path / "backups"), "-o", str(target))
    assert result.exit_code == 0, result.output
    checked = run("--config", str(target), "doctor")
    assert checked.exit_code == 0, checked.output
    assert "FAIL" not in checked.output
    assert f"127.0.0.1:{testbed_env['MYSQL_PORT']}" in checked.output


def test_init_keeps_a_hostile_env_value_out_of_the_config_it_writes(tmp_path):
    folder = write_env(tmp_path, 'DOC_ENGINE="infinity\\nmysql:\\n  host: evil.example"\nEXPOSE_MYSQL_PORT=3306\n')
    config, output = init_config(tmp_path, folder)
    assert config["mysql"]["host"] == "127.0.0.1" and config["search"] == {"enabled": False}
    assert "evil.example" not in (tmp_path / "config.yml").read_text() and "(unreadable value)" in output
