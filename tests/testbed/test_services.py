"""The test bed's services are real and reachable through the clients the product uses."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from io import BytesIO

import dramatiq
import pytest
import redis as redis_lib
from dramatiq import Worker

from actors.broker import make_broker
from core import clients
from testbed import settings as testbed_settings

# ---------------------------------------------------------------- Redis and Dramatiq


def test_redis_is_configured_like_ragflows(testbed_env, redis_db):
    client = clients.redis_client(testbed_settings.redis(testbed_env, db=redis_db))
    assert client.ping()
    assert client.config_get("maxmemory")["maxmemory"] == str(128 * 1024 * 1024)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"].endswith("lru")


def test_redis_refuses_a_client_without_the_password(testbed_env):
    anonymous = redis_lib.Redis(host=testbed_env["REDIS_HOST"], port=int(testbed_env["REDIS_PORT"]))
    with pytest.raises(redis_lib.AuthenticationError):
        anonymous.ping()


def test_a_dramatiq_message_round_trips_through_redis_to_a_real_worker(redis_url):
    broker = make_broker(redis_url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    received = redis_lib.Redis.from_url(redis_url)

    @dramatiq.actor(broker=broker, queue_name="roundtrip", max_retries=0)
    def remember(value: str) -> None:
        received.rpush("remembered", value)

    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        remember.send("hello from the broker")
        broker.join("roundtrip", timeout=30_000)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    assert received.lrange("remembered", 0, -1) == [b"hello from the broker"]


# ---------------------------------------------------------------- MariaDB and mysqldump


def _create_sample_table(settings) -> None:
    with clients.mysql_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE knowledgebase (id VARCHAR(32) PRIMARY KEY, name VARCHAR(128))")
        cur.execute("INSERT INTO knowledgebase VALUES (%s, %s)", (uuid.uuid4().hex, "Handbücher"))


def test_mariadb_answers_queries_with_binary_logging_on(testbed_env, mysql_database):
    settings = testbed_settings.mysql(testbed_env, database=mysql_database)
    _create_sample_table(settings)
    with clients.mysql_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM knowledgebase")
        assert cur.fetchall() == (("Handbücher",),)
        cur.execute("SELECT @@log_bin")
        assert cur.fetchone()[0] == 1


def test_mysqldump_over_tcp_dumps_the_database(testbed_env, mysql_database, tmp_path):
    settings = testbed_settings.mysql(testbed_env, database=mysql_database)
    _create_sample_table(settings)
    # The password goes through a 0600 option file, never the command line.
    options = tmp_path / "client.cnf"
    options.write_text(f"[client]\npassword={testbed_env['MYSQL_PASSWORD']}\n")
    options.chmod(0o600)
    dump = subprocess.run(
        ["mysqldump", f"--defaults-extra-file={options}", "-h", settings.host, "-P", str(settings.port), "-u",
         settings.user, "--single-transaction", "--routines", "--triggers", "--events", mysql_database],
        capture_output=True, check=True,
    ).stdout.decode()
    assert "CREATE TABLE `knowledgebase`" in dump
    assert "Handbücher" in dump


def test_mysqldump_runs_in_the_compose_labelled_container_through_docker_exec(
    testbed_env, docker_client, docker_mysql_database
):
    _create_sample_table(testbed_settings.mysql(testbed_env, database=docker_mysql_database, docker=True))
    found = docker_client.containers.list(filters={"label": [
        "com.docker.compose.service=mysql", f"com.docker.compose.project={testbed_env['DOCKER_COMPOSE_PROJECT']}",
    ]})
    assert [container.name for container in found] == [testbed_env["DOCKER_MYSQL_CONTAINER"]]
    # The Docker API carries the password in the exec's environment: no argv on either side holds it.
    result = found[0].exec_run(
        ["mysqldump", "-uroot", "--single-transaction", "--routines", "--triggers", docker_mysql_database],
        environment={"MYSQL_PWD": testbed_env["MYSQL_PASSWORD"]}, demux=True,
    )
    stdout, stderr = result.output
    assert result.exit_code == 0, stderr
    assert b"CREATE TABLE `knowledgebase`" in stdout


# ---------------------------------------------------------------- MinIO and mc


def test_minio_stores_and_returns_an_object(minio_client, bucket):
    payload = os.urandom(70_000)
    minio_client.put_object(bucket, "docs/report.pdf", BytesIO(payload), len(payload), content_type="application/pdf")
    response = minio_client.get_object(bucket, "docs/report.pdf")
    try:
        assert response.read() == payload
        assert response.headers["Content-Type"] == "application/pdf"
    finally:
        response.close()
        response.release_conn()


def test_minio_announces_a_put_through_bucket_notifications(minio_client, bucket):
    events: list[dict] = []
    listening = threading.Event()

    def listen() -> None:
        with minio_client.listen_bucket_notification(bucket, events=["s3:ObjectCreated:*"]) as stream:
            listening.set()
            for event in stream:
                events.append(event)
                return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait(10)
    # The listen request is registered server-side shortly after the stream opens; put until heard.
    for attempt in range(20):
        minio_client.put_object(bucket, f"hello-{attempt}.txt", BytesIO(b"hi"), 2)
        listener.join(0.5)
        if events:
            break
    assert events, "no bucket notification arrived"
    record = events[0]["Records"][0]
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert record["s3"]["object"]["key"].startswith("hello-")


def test_the_built_mc_client_lists_the_testbed_bucket(testbed_env, minio_client, bucket):
    minio_client.put_object(bucket, "a.txt", BytesIO(b"a"), 1)
    endpoint = testbed_env["MINIO_ENDPOINT"]
    alias_env = {**os.environ, "MC_HOST_tb": f"http://{testbed_env['MINIO_ACCESS_KEY']}:{testbed_env['MINIO_SECRET_KEY']}@{endpoint}"}
    listing = subprocess.run([testbed_env["MC"], "--json", "ls", f"tb/{bucket}"], env=alias_env,
                             capture_output=True, check=True, text=True).stdout
    assert [json.loads(line)["key"] for line in listing.splitlines()] == ["a.txt"]


# ---------------------------------------------------------------- Elasticsearch / OpenSearch


def _create_index(client, name: str, docs: int) -> None:
    body = "".join(json.dumps(line) + "\n" for i in range(docs)
                   for line in ({"index": {"_index": name, "_id": str(i)}}, {"kb_id": "kb", "content_with_weight": f"chunk {i}"}))
    if client.__class__.__module__.startswith("opensearchpy"):
        client.bulk(body=body, refresh=True)
    else:
        client.bulk(operations=body, refresh=True)


def test_the_search_engine_takes_an_fs_snapshot_into_path_repo(search_settings, index_prefix):
    client = clients.search_client(search_settings)
    index = f"{index_prefix}ragflow_tenant"
    _create_index(client, index, docs=5)
    repository_body = {"type": "fs", "settings": {"location": search_settings.repository_path}}
    if search_settings.engine == "opensearch":
        client.snapshot.create_repository(repository=search_settings.repository, body=repository_body)
        result = client.snapshot.create(repository=search_settings.repository, snapshot="snap-1",
                                        body={"indices": index}, wait_for_completion=True)
    else:
        client.snapshot.create_repository(name=search_settings.repository, repository=repository_body)
        result = client.snapshot.create(repository=search_settings.repository, snapshot="snap-1",
                                        indices=index, wait_for_completion=True)
    snapshot = result["snapshot"]
    assert snapshot["state"] == "SUCCESS"
    assert snapshot["indices"] == [index]
    listed = client.snapshot.get(repository=search_settings.repository, snapshot="_all")["snapshots"]
    assert [item["snapshot"] for item in listed] == ["snap-1"]
    client.snapshot.delete(repository=search_settings.repository, snapshot="snap-1")


def test_elasticsearch_refuses_a_request_without_the_elastic_password(testbed_env):
    from elasticsearch import AuthenticationException, Elasticsearch

    with pytest.raises(AuthenticationException):
        Elasticsearch(testbed_env["ES_URL"]).cluster.health()


# ---------------------------------------------------------------- Docker engine


def test_the_docker_engine_runs_the_mysql_container_from_a_locally_built_image(testbed_env, docker_client):
    container = docker_client.containers.get(testbed_env["DOCKER_MYSQL_CONTAINER"])
    assert container.status == "running"
    assert container.labels["com.docker.compose.service"] == "mysql"
    assert container.image.tags == ["rbtb/mariadb:bookworm"]
