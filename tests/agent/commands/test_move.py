"""`move --start-containers`: the data services' existing containers are started through the Docker API,
found by RAGFlow's compose labels; nothing else of the project is started."""
from __future__ import annotations

import uuid

from agent.commands.move import start_containers
from core import clients
from core.config import Settings
from tests.conftest import reach

IMAGE = "rbtb/mariadb:bookworm"  # any image of the test bed's dockerd: the container only sleeps


def test_the_stopped_containers_of_the_data_services_are_started_and_ragflow_itself_is_not(tmp_path, testbed_env):
    docker = reach("dockerd (the test bed's)", lambda: clients.docker_client(testbed_env["DOCKER_HOST"]))
    project = f"move-{uuid.uuid4().hex[:8]}"
    made = {service: docker.containers.create(IMAGE, ["sleep", "600"], name=f"{project}-{service}-1", labels={
        "com.docker.compose.project": project, "com.docker.compose.service": service}) for service in ("redis", "ragflow")}
    try:
        settings = Settings(storage_root=tmp_path / "backups", docker={"host": testbed_env["DOCKER_HOST"]},
                            mysql={"compose_project": project})

        started = start_containers(settings, ["redis", "minio"])

        assert started == [f"{project}-redis-1"]
        assert docker.containers.get(made["redis"].id).status == "running"
        assert docker.containers.get(made["ragflow"].id).status == "created"
        assert start_containers(settings, ["redis"]) == []  # running already: nothing to start
    finally:
        for container in made.values():
            container.remove(force=True)
