"""`ragflow-backup doctor` against the real test bed: what is right, and what is wrong with a way to fix it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli import app
from testbed.private_servers import PrivateRedis


def write_config(tmp_path: Path, env: dict[str, str], redis_url: str, **overrides) -> Path:
    config = {
        "storage_root": str(tmp_path / "backups"),
        "broker": {"url": redis_url},
        "mysql": {"host": env["MYSQL_HOST"], "port": int(env["MYSQL_PORT"]), "password": env["MYSQL_PASSWORD"]},
        "minio": {"endpoint": env["MINIO_ENDPOINT"], "access_key": env["MINIO_ACCESS_KEY"], "secret_key": env["MINIO_SECRET_KEY"]},
        "search": {"url": env["ES_URL"], "password": env["ES_PASSWORD"],
                   "repository_path": f"{env['SNAPSHOT_ROOT']}/doctor"},
        "redis": {"enabled": True, "host": env["REDIS_HOST"], "port": int(env["REDIS_PORT"]), "password": env["REDIS_PASSWORD"]},
    }
    for section, values in overrides.items():
        config[section].update(values)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows(output: str) -> dict[str, list[str]]:
    """doctor's table as {check: [status, found, how to fix]}, each cell's wrapped lines joined again."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        cells = line.split("│")
        if len(cells) != 6:
            continue
        name, *rest = (cell.strip() for cell in cells[1:5])
        if name:
            current = found.setdefault(name, ["", "", ""])
        for i, text in enumerate(rest):
            current[i] = f"{current[i]} {text}".strip() if text else current[i]
    return found


def doctor(path: Path):
    return CliRunner().invoke(app, ["--config", str(path), "doctor"], terminal_width=200)


def test_doctor_passes_on_the_running_testbed_and_warns_about_an_lru_broker(tmp_path, testbed_env, redis_url):
    result = doctor(write_config(tmp_path, testbed_env, redis_url))
    assert result.exit_code == 0, result.output
    assert "8.11.3" in result.output
    assert "allkeys-lru" in result.output and "warn" in result.output


def test_doctor_fails_on_a_wrong_mysql_password_without_printing_it(tmp_path, testbed_env, redis_url):
    result = doctor(write_config(tmp_path, testbed_env, redis_url, mysql={"password": "not-the-password-42"}))
    assert result.exit_code == 1
    assert "Access denied" in result.output
    assert "not-the-password-42" not in result.output


def test_doctor_finds_the_mysql_container_by_its_compose_label(tmp_path, testbed_env, redis_url):
    path = write_config(tmp_path, testbed_env, redis_url,
                        mysql={"mode": "docker", "compose_project": testbed_env["DOCKER_COMPOSE_PROJECT"]})
    config = yaml.safe_load(path.read_text())
    config["docker"] = {"host": testbed_env["DOCKER_HOST"]}
    path.write_text(yaml.safe_dump(config))
    result = doctor(path)
    assert result.exit_code == 0, result.output
    assert testbed_env["DOCKER_MYSQL_CONTAINER"] in result.output


def test_doctor_gives_the_compose_override_when_the_repository_is_outside_path_repo(tmp_path, testbed_env, redis_url):
    result = doctor(write_config(tmp_path, testbed_env, redis_url, search={"repository_path": "/somewhere/else"}))
    assert result.exit_code == 1
    assert "path.repo" in result.output and "es01" in result.output


def test_doctor_names_an_unreachable_service(tmp_path, testbed_env, redis_url):
    result = doctor(write_config(tmp_path, testbed_env, redis_url, minio={"endpoint": "127.0.0.1:1"}))
    assert result.exit_code == 1
    assert "minio" in result.output and "FAIL" in result.output


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "private-redis", persistent=False)
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("policy, status", [
    ("volatile-lru", "ok"), ("volatile-ttl", "ok"), ("noeviction", "ok"), ("allkeys-lfu", "warn"),
    ("allkeys-random", "warn")])
def test_doctor_judges_the_brokers_eviction_policy_by_what_it_can_evict(tmp_path, testbed_env, private_redis,
                                                                        policy, status):
    private_redis.client().config_set("maxmemory-policy", policy)
    result = doctor(write_config(tmp_path, testbed_env, private_redis.url(2)))
    assert result.exit_code == 0, result.output
    state, found, _ = rows(result.output)["broker (Redis)"]
    assert state == status and f"maxmemory-policy {policy}" in found


def test_doctor_states_the_rpo_of_a_store_mirrored_by_reconcile_alone(tmp_path, testbed_env, redis_url):
    path = write_config(tmp_path, testbed_env, redis_url, minio={"events": False})
    result = doctor(path)
    assert result.exit_code == 0, result.output
    assert "reconcile alone mirrors, RPO 15 min" in rows(result.output)["minio"][1]
    config = yaml.safe_load(path.read_text())
    config["schedule"] = {"reconcile": ""}
    path.write_text(yaml.safe_dump(config))
    result = doctor(path)
    assert result.exit_code == 1 and rows(result.output)["minio"][0] == "FAIL"
    assert "nothing mirrors the store" in rows(result.output)["minio"][1]


def test_doctor_says_why_search_is_off_for_an_engine_without_snapshots(tmp_path, testbed_env, redis_url):
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / ".env").write_text(f"DOC_ENGINE=infinity\nMYSQL_PASSWORD={testbed_env['MYSQL_PASSWORD']}\n")
    path = write_config(tmp_path, testbed_env, redis_url, search={"enabled": False})
    config = yaml.safe_load(path.read_text())
    config["ragflow_dir"] = str(docker)
    path.write_text(yaml.safe_dump(config))
    result = doctor(path)
    assert result.exit_code == 0, result.output
    assert rows(result.output)["elasticsearch"][:2] == [
        "off", "DOC_ENGINE=infinity is not supported (Elasticsearch and OpenSearch are): re-parse the documents "
               "after a restore to rebuild their chunks"]


def test_doctor_fails_an_amazon_s3_endpoint_left_waiting_for_bucket_notifications(tmp_path, testbed_env, redis_url):
    path = write_config(tmp_path, testbed_env, redis_url,
                        minio={"endpoint": "s3.amazonaws.com", "secure": True, "secret_key": "not-a-real-secret-55"})
    result = doctor(path)  # the client refuses to listen on Amazon S3 before any request is made
    state, found, fix = rows(result.output)["minio"]
    assert result.exit_code == 1 and state == "FAIL"
    assert "not supported in Amazon S3" in found and "minio.events: false" in fix
    assert "not-a-real-secret-55" not in result.output


def test_doctor_warns_when_interval_snapshots_are_on_but_the_agent_cannot_read_the_repository(tmp_path, testbed_env,
                                                                                               redis_url):
    elsewhere = f"{testbed_env['SNAPSHOT_ROOT']}/not-mounted-here-{tmp_path.name}"
    result = doctor(write_config(tmp_path, testbed_env, redis_url, search={"repository_path": elsewhere}))
    status, found, fix = rows(result.output)["search intervals"]
    assert result.exit_code == 0, result.output  # a warning: interval snapshots are still taken
    assert status == "warn" and "is not a folder on this machine" in found and "go offsite" in found
    assert "read access" in fix


def test_doctor_says_nothing_of_interval_snapshots_when_they_are_off(tmp_path, testbed_env, redis_url):
    result = doctor(write_config(tmp_path, testbed_env, redis_url, search={"snapshot_interval_minutes": 0}))
    assert "search intervals" not in rows(result.output)
