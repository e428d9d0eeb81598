"""Every point records the RAGFlow it was taken from; list and status show it; restore refuses a newer one."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli import app
from core.manifest import RagflowVersion, SchemaShape
from core.points import Storage
from core.ragflow_version import newer_than, tag_version
from testbed import settings as tb
from testbed.seed import Dataset, remove, seed, write_ragflow_dir


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=250)


@pytest.fixture
def ragflow(tmp_path, testbed_env) -> Iterator[Dataset]:
    """A seeded database of this test's own and RAGFlow v0.27's docker/ folder pointed at the test bed."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    mysql = tb.mysql(testbed_env, database=database)
    dataset = seed(database=database, mysql=mysql, ragflow_dir=tmp_path / "ragflow" / "docker", env=testbed_env)
    yield dataset
    remove(dataset, mysql=mysql)


def write_config(tmp_path: Path, env: dict[str, str], dataset: Dataset, redis_url: str, **extra) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(dataset.ragflow_dir),
        "broker": {"url": redis_url},
        "mysql": {"host": env["MYSQL_HOST"], "port": int(env["MYSQL_PORT"]), "database": dataset.database},
        "minio": {"enabled": False}, "search": {"enabled": False}, **extra,
    }))
    return path


def version(image: str | None, columns: int = 10, fingerprint: str = "a" * 16) -> RagflowVersion:
    return RagflowVersion(image=image, schema_shape=SchemaShape(tables=3, columns=columns, fingerprint=fingerprint))


def test_image_tags_are_read_as_versions_and_compared_by_one_rule():
    assert tag_version("infiniflow/ragflow:v0.27.0") == (0, 27, 0)
    assert tag_version("registry.cn-hangzhou.aliyuncs.com/infiniflow/ragflow:v0.20.5-slim") == (0, 20, 5)
    assert tag_version("localhost:5000/ragflow") is None and tag_version("infiniflow/ragflow:nightly") is None
    assert newer_than(version("infiniflow/ragflow:v0.27.0"), version("infiniflow/ragflow:v0.20.5-slim"))
    assert not newer_than(version("infiniflow/ragflow:v0.20.5-slim"), version("infiniflow/ragflow:v0.27.0"))
    assert not newer_than(version("infiniflow/ragflow:v0.27.0"), version("infiniflow/ragflow:v0.27.0"))
    # Without a version in either tag, a database with more columns than ours is from a newer RAGFlow.
    assert newer_than(version("ragflow:nightly", 12, "b" * 16), version("ragflow:nightly", 10))
    assert not newer_than(version("ragflow:nightly", 10), version("ragflow:nightly", 12, "b" * 16))
    assert not newer_than(None, version("infiniflow/ragflow:v0.27.0"))


@pytest.mark.parametrize("layout, image", [("v0.27", "infiniflow/ragflow:v0.27.0"),
                                           ("v0.20", "infiniflow/ragflow:v0.20.5-slim")])
def test_a_point_records_ragflows_image_and_schema_and_list_and_status_show_them(tmp_path, testbed_env, ragflow,
                                                                                  redis_url, layout, image):
    write_ragflow_dir(ragflow.ragflow_dir, testbed_env, layout)
    config = write_config(tmp_path, testbed_env, ragflow, redis_url)
    assert cli(config, "backup", "--local").exit_code == 0
    [point] = Storage(tmp_path / "backups").points("daily")
    recorded = point.manifest().ragflow
    assert recorded.image == image
    assert recorded.schema_shape.tables == len(ragflow.row_counts) and recorded.schema_shape.columns > 50
    listed = cli(config, "list")
    assert listed.exit_code == 0 and image.rpartition(":")[2] in listed.output
    status = cli(config, "status")
    assert status.exit_code == 0, status.output
    assert f"RAGFlow: {image}, schema {recorded.schema_shape.tables} tables" in status.output
    assert f"newest point {point.ref} taken under {image}" in status.output


@pytest.fixture
def app_container(docker_client, testbed_env) -> Iterator[tuple[str, str]]:
    """A container labelled as RAGFlow's ragflow-cpu service of a compose project of this test's own, started
    from the test bed's image under a tag of this test's own; yields (project, image)."""
    project, tag = f"rbtest{uuid.uuid4().hex[:8]}", f"v0.27.0-{uuid.uuid4().hex[:8]}"
    base = docker_client.containers.get(testbed_env["DOCKER_MYSQL_CONTAINER"]).image
    base.tag("infiniflow/ragflow", tag)
    image = f"infiniflow/ragflow:{tag}"
    container = docker_client.containers.run(image, ["sleep", "600"], detach=True, network_mode="none", labels={
        "com.docker.compose.service": "ragflow-cpu", "com.docker.compose.project": project})
    try:
        yield project, image
    finally:
        container.remove(force=True)
        docker_client.images.remove(image)


def test_a_point_records_the_image_and_digest_ragflows_app_container_runs(tmp_path, testbed_env, ragflow, redis_url,
                                                                         app_container, docker_client):
    project, image = app_container
    config = write_config(tmp_path, testbed_env, ragflow, redis_url, docker={"host": testbed_env["DOCKER_HOST"]})
    settings = yaml.safe_load(config.read_text())
    settings["mysql"]["compose_project"] = project
    config.write_text(yaml.safe_dump(settings))
    assert cli(config, "backup", "--local").exit_code == 0
    [point] = Storage(tmp_path / "backups").points("daily")
    recorded = point.manifest().ragflow
    assert recorded.running_image == image and recorded.image == "infiniflow/ragflow:v0.27.0"
    assert recorded.running_digest == docker_client.images.get(image).id
    assert recorded.label() == image.rpartition(":")[2]


def test_restore_refuses_a_point_from_a_newer_ragflow_unless_forced_and_names_the_image(tmp_path, testbed_env,
                                                                                        ragflow, redis_url):
    config = write_config(tmp_path, testbed_env, ragflow, redis_url)
    assert cli(config, "backup", "--local").exit_code == 0
    [point] = Storage(tmp_path / "backups").points("daily")
    manifest = json.loads((point.folder / "manifest.json").read_text())
    manifest["ragflow"]["image"] = "infiniflow/ragflow:v0.99.1"  # as if taken before RAGFlow was downgraded
    (point.folder / "manifest.json").write_text(json.dumps(manifest))

    refused = cli(config, "restore", "--point", point.ref, "-C", "mysql", "--yes")
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())
    assert "newer RAGFlow" in text and "Run infiniflow/ragflow:v0.99.1 first" in text and "--force" in text
    assert not Storage(tmp_path / "backups").points("safety")  # nothing was started

    planned = cli(config, "restore", "--point", point.ref, "-C", "mysql", "--dry-run")
    assert planned.exit_code == 0 and "newer RAGFlow" in planned.output
    assert "a restore needs --force" in " ".join(planned.output.split())

    forced = cli(config, "restore", "--point", point.ref, "-C", "mysql", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert "restoring anyway (--force)" in " ".join(forced.output.split())
