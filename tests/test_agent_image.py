"""The agent image for real: built from docker/Dockerfile on the test bed's Debian base image (no Docker
Hub here), started the way docker/docker-compose.standalone.yml starts it (its user, environment, volumes,
init and stop timeout; `--network host` since the test bed's engine has no bridge), against the test
bed's MariaDB, Redis and a private MinIO.

The base image comes from scripts/testbed (build_agent_base_image); the first build takes minutes
(vfs storage), later ones reuse the cached layers.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import docker
from core import clients
from core.mirror_store import MirrorStore
from core.points import Storage
from testbed import settings as testbed_settings
from testbed.polling import wait_for
from tests.conftest import reach, unique

ROOT = Path(__file__).resolve().parents[1]
STANDALONE = ROOT / "docker" / "docker-compose.standalone.yml"
RAGFLOW_V027 = ROOT / "testbed" / "ragflow_docker" / "v0.27"
BASE_IMAGE = "rbtb/agent-base:bookworm"  # scripts/testbed: AGENT_BASE_IMAGE
IMAGE = "rbtb/ragflow-backup:test"
METRICS_PORT = 9108  # the HEALTHCHECK asks this port
# The NAS user owning the folders: neither root nor the image's own 10001.
PUID, PGID = 4242, 4343
VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def engine(testbed_env) -> docker.DockerClient:
    # Builds stream for minutes: a long socket timeout, unlike the product's client.
    client = docker.DockerClient(base_url=testbed_env["DOCKER_HOST"], timeout=1800)
    reach("Docker engine", client.ping)
    return client


@pytest.fixture(scope="module")
def image(engine) -> str:
    try:
        engine.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the test bed has no {BASE_IMAGE}: run `scripts/testbed up` (or `scripts/testbed "
                    f"agent-base-image` once its Docker engine runs)", pytrace=False)
    try:
        old = engine.images.get(IMAGE).id
    except docker.errors.ImageNotFound:
        old = None
    try:
        built, _ = engine.images.build(path=str(ROOT), dockerfile="docker/Dockerfile", tag=IMAGE, rm=True,
                                       forcerm=True, network_mode="host", buildargs={"BASE_IMAGE": BASE_IMAGE})
    except docker.errors.BuildError as exc:
        log = "".join(str(line.get("stream") or line.get("error") or "") for line in exc.build_log)
        pytest.fail(f"docker build failed: {exc}\n{log[-4000:]}", pytrace=False)
    if old and old != built.id:  # vfs keeps every layer as a full copy: drop the previous build
        try:
            engine.images.remove(old)
        except docker.errors.APIError:
            pass
    return IMAGE


def substituted(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME:-default}, with `variables` as the stack's environment."""
    return VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(2)), value)


def standalone_run_options(host_side: dict[str, Path], variables: dict[str, str]) -> dict:
    """docker run options equal to the standalone stack's service, its host paths replaced by ours."""
    service = yaml.safe_load(STANDALONE.read_text())["services"]["ragflow-backup"]
    volumes = {}
    for volume in service["volumes"]:
        _, target, *mode = volume.split(":")
        volumes[str(host_side[target])] = {"bind": target, "mode": mode[0] if mode else "rw"}
    seconds = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert seconds, service["stop_grace_period"]
    return {
        "user": substituted(service["user"], variables),
        "environment": {key: substituted(str(value), variables) for key, value in service["environment"].items()},
        "volumes": volumes,
        "init": service["init"],
        "stop_timeout": int(seconds.group(1)),
    }


def owned_by_the_nas_user(path: Path) -> Path:
    """Give `path` (and what is below it) to PUID:PGID, as the NAS user's share would be."""
    for item in [path, *path.rglob("*")]:
        os.chown(item, PUID, PGID, follow_symlinks=False)
    return path


@pytest.fixture
def deployment(tmp_path, testbed_env, redis_db, mysql_database, private_minio) -> dict[str, Path]:
    """RAGFlow's docker/ folder, the backup folder and a config on the host, owned by the NAS user;
    keyed by where the standalone stack mounts each."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", METRICS_PORT)) == 0:
            pytest.fail(f"port {METRICS_PORT} is taken on this host; the image's health check needs it", pytrace=False)
    ragflow = tmp_path / "ragflow" / "docker"
    shutil.copytree(RAGFLOW_V027, ragflow)
    (ragflow / ".env").write_text(
        f"MYSQL_PASSWORD={testbed_env['MYSQL_PASSWORD']}\nREDIS_PASSWORD={testbed_env['REDIS_PASSWORD']}\n"
        f"MINIO_USER={private_minio.access_key}\nMINIO_PASSWORD={private_minio.secret_key}\nTZ=Europe/Berlin\n")
    with clients.mysql_connection(testbed_settings.mysql(testbed_env, database=mysql_database)) as conn, \
            conn.cursor() as cur:
        cur.execute("CREATE TABLE knowledgebase (id VARCHAR(32) PRIMARY KEY, name VARCHAR(128))")
        cur.execute("INSERT INTO knowledgebase VALUES ('kb1', 'manuals'), ('kb2', 'contracts')")
        conn.commit()
    config = {  # no passwords: they come from RAGFlow's .env, as in a real install
        "broker": {"url": f"redis://127.0.0.1:{testbed_env['REDIS_PORT']}/{redis_db}", "namespace": unique("img-")},
        "mysql": {"host": "127.0.0.1", "port": int(testbed_env["MYSQL_PORT"]), "user": testbed_env["MYSQL_USER"],
                  "database": mysql_database},
        "minio": {"endpoint": private_minio.endpoint, "bucket_discovery_seconds": 1},
        "search": {"enabled": False},
        "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": ""},
        "metrics": {"host": "127.0.0.1", "port": METRICS_PORT},
    }
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "backups").mkdir()
    return {
        "/ragflow/docker": owned_by_the_nas_user(ragflow),
        "/share/backups/ragflow": owned_by_the_nas_user(tmp_path / "backups"),
        "/etc/ragflow-backup/config.yml": owned_by_the_nas_user(tmp_path / "etc" / "config.yml"),
    }


@pytest.fixture
def container(engine, image, deployment) -> Iterator:
    options = standalone_run_options(deployment, {"PUID": str(PUID), "PGID": str(PGID), "TZ": "Europe/Berlin"})
    stop_timeout = options.pop("stop_timeout")  # docker stop's --time, as compose's stop_grace_period
    started = engine.containers.run(image, detach=True, name=unique("rbtb-agent-image-"), network_mode="host",
                                    labels={"rbtb.test": "test_agent_image"}, **options)
    started.stop_timeout = stop_timeout
    yield started
    started.reload()
    if started.status == "running":
        started.kill()
    started.remove(force=True)


def health(container) -> str:
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status", "none")


def run(container, *command: str) -> str:
    result = container.exec_run(list(command))
    assert result.exit_code == 0, result.output.decode(errors="replace")
    return result.output.decode(errors="replace")


def mirrored(storage_root: Path, bucket: str, key: str) -> bytes | None:
    root = storage_root / "minio_mirror"  # minio.mirror_dir
    if not (root / ".index.sqlite").exists():
        return None
    store = MirrorStore(root)
    try:
        entry = store.entry(bucket, key)
        return None if entry is None else entry.path.read_bytes()
    finally:
        store.close()


@pytest.mark.timeout(1800)  # a first build on vfs takes ~8 minutes (setup counts against the test's timeout)
def test_the_image_runs_as_the_stacks_user_backs_up_mirrors_and_stops_cleanly_on_sigterm(
        container, deployment, private_minio):
    storage_root = deployment["/share/backups/ragflow"]
    assert wait_for(lambda: health(container) == "healthy" or health(container) == "unhealthy",
                    "the image's HEALTHCHECK to decide", timeout=300, interval=1)
    assert health(container) == "healthy", container.logs()[-3000:].decode(errors="replace")

    # Every process of the container, the agent's included, runs as PUID:PGID, none as root.
    assert run(container, "id", "-u").strip() == str(PUID) and run(container, "id", "-g").strip() == str(PGID)
    processes = container.top(ps_args="-o pid,uid,gid,args")["Processes"]  # docker top needs the pid
    assert {(row[1], row[2]) for row in processes} == {(str(PUID), str(PGID))}, processes
    assert any("ragflow-backup" in row[3] for row in processes), processes
    assert run(container, "date", "+%Z").strip() in ("CET", "CEST"), "TZ from the stack's environment"
    # RAGFlow on PostgreSQL (DB_TYPE=postgres) in TCP mode needs PostgreSQL's client in the image.
    assert run(container, "pg_dump", "--version").startswith("pg_dump (PostgreSQL) ")
    assert run(container, "pg_restore", "--version").startswith("pg_restore (PostgreSQL) ")

    client = clients.minio_client(private_minio.settings())
    client.make_bucket("kb-image")
    client.put_object("kb-image", "docs/manual.pdf", io.BytesIO(b"a knowledge base file"), 21)
    wait_for(lambda: mirrored(storage_root, "kb-image", "docs/manual.pdf") == b"a knowledge base file",
             "the object in the mirror", timeout=120, interval=0.5)

    output = run(container, "ragflow-backup", "backup", "--wait", "--timeout", "600")
    points = Storage(storage_root).points("daily")
    assert len(points) == 1 and points[0].status() == "complete", output
    assert {"mysql", "config"} <= set(points[0].manifest().components), output
    assert {(p.stat().st_uid, p.stat().st_gid) for p in storage_root.rglob("*")} == {(PUID, PGID)}

    container.stop(timeout=container.stop_timeout)  # SIGTERM, the image's STOPSIGNAL
    container.reload()
    assert container.attrs["State"]["Running"] is False
    assert container.attrs["State"]["ExitCode"] == 0, container.logs()[-3000:].decode(errors="replace")
    assert container.attrs["State"]["OOMKilled"] is False
    assert {p.status() for p in Storage(storage_root).points()} == {"complete"}, "nothing left running"
