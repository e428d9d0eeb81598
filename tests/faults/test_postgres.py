"""PostgreSQL stopped, hung (SIGSTOP of the whole server) and restarted during a backup run, and a wrong password,
on a server of the test's own: the run fails naming the server, no point is marked complete that is not, the
existing points stay byte-identical, and the next run completes."""
from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors.postgres.session import connect, deadline
from core import clients
from core.points import Storage
from testbed.polling import wait_for
from testbed.private_servers import PrivatePostgres
from tests.conftest import reach
from tests.faults.harness import cli, fingerprint, write_config
from tests.faults.test_services import Target, assert_failed_and_recovers, backup, newest

ARTIFACT = "postgres_dump.pgdump"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        reach("PostgreSQL (private postgres from Debian's package)", server.start)
        with server.connection() as conn:
            conn.execute("CREATE DATABASE rag_flow")
        with server.connection("rag_flow") as conn:  # enough rows that a dump lasts a few seconds
            conn.execute("CREATE TABLE chunk (id bigserial PRIMARY KEY, body text)")
            conn.execute("INSERT INTO chunk (body) SELECT repeat(md5(random()::text), 8) || md5(g::text) "
                         "FROM generate_series(1, 400000) g")
        yield server
    finally:
        server.cleanup()


def postgres_target(server: PrivatePostgres) -> Target:
    section = {"enabled": True, "host": "127.0.0.1", "port": server.port, "user": server.user,
               "password": server.password, "database": "rag_flow", "stall_timeout_seconds": 5, "compression_level": 9}
    # Busy: the archive's temp file is open and pg_dump is connected (the server may stream the rows out
    # faster than pg_dump compresses them, so waiting for bytes in the file could be too late).
    return Target("postgres", server, section, f"127.0.0.1:{server.port}", ARTIFACT,
                  lambda folder: any(folder.glob(f".{ARTIFACT}.tmp-*")) and dumping(server))


def dumping(server: PrivatePostgres) -> bool:
    with server.connection() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'").fetchone()[0] > 0


def config_for(tmp_path: Path, target: Target, inbox, **more: dict) -> Path:
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "config_files": {"enabled": False},
        "search": {"enabled": False}, "mysql": {"enabled": False}, "postgres": target.section,
        "notify": {"urls": [inbox.url], "min_interval_seconds": 0}, **more})


@pytest.mark.fault("PostgreSQL stopped during a run",
                   "the connection is refused: the component fails naming host:port, the point is failed, a failure "
                   "is notified; the next run completes and a recovery is notified")
@pytest.mark.fault("PostgreSQL hung (SIGSTOP) during a run",
                   "the connect timeout (10 s) ends the run naming host:port, a failure is notified; after SIGCONT "
                   "the next run completes")
@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_a_stopped_or_hung_postgres_fails_the_run_naming_it_and_the_next_run_completes(tmp_path, private_postgres,
                                                                                       fault, inbox):
    target = postgres_target(private_postgres)
    config = config_for(tmp_path, target, inbox)
    first = backup(config, "postgres")
    assert first.returncode == 0, first.stdout
    before = fingerprint(tmp_path / "backups", ("daily",))

    (private_postgres.stop if fault == "stopped" else private_postgres.pause)()
    try:
        done = backup(config, "postgres")
    finally:
        private_postgres.resume()
        if private_postgres.pid() is None:
            private_postgres.start()
        private_postgres.wait_ready()
    assert_failed_and_recovers(tmp_path, target, inbox, config, done, before)


@pytest.mark.fault("PostgreSQL hung (SIGSTOP) in the middle of a dump",
                   "the dump's stall timeout (postgres.stall_timeout_seconds) kills pg_dump; the component fails "
                   "naming host:port, nothing is kept")
@pytest.mark.fault("PostgreSQL restarted in the middle of a dump",
                   "pg_dump loses its connection and exits non-zero: the cut-off archive is not kept, the failure "
                   "names host:port; the next run completes")
@pytest.mark.parametrize("fault", ["hung", "restarted"])
def test_a_postgres_hung_or_restarted_mid_dump_never_leaves_a_complete_point(tmp_path, private_postgres, fault, inbox):
    target = postgres_target(private_postgres)
    config = config_for(tmp_path, target, inbox)
    first = backup(config, "postgres")
    assert first.returncode == 0, first.stdout
    before = fingerprint(tmp_path / "backups", ("daily",))
    folders = {p.folder for p in Storage(tmp_path / "backups").points("daily")}

    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault("done", backup(config, "postgres")))
    runner.start()
    try:
        def busy():
            fresh = [p for p in Storage(tmp_path / "backups").points("daily") if p.folder not in folders]
            return fresh and target.busy(fresh[0].folder)
        wait_for(busy, "the dump to be under way", timeout=120, interval=0.01)
        (private_postgres.pause if fault == "hung" else private_postgres.restart)()
        runner.join(300)
    finally:
        private_postgres.resume()
        runner.join(300)
        private_postgres.wait_ready()
    done = result["done"]
    if done.returncode == 0:  # the dump had ended when the fault struck: it must verify
        assert fault == "restarted", done.stdout
        assert cli(config, "verify", newest(tmp_path).ref).returncode == 0
        return
    assert_failed_and_recovers(tmp_path, target, inbox, config, done, before)


@pytest.mark.fault("PostgreSQL: wrong password",
                   "the run fails at once (no retries) saying the server refused the user and to check "
                   "postgres.password / POSTGRES_PASSWORD; the password is in no output; doctor says the same")
def test_a_wrong_postgres_password_fails_the_run_saying_which_setting_to_fix(tmp_path, private_postgres, inbox):
    target = postgres_target(private_postgres)
    target.section["password"] = "not-the-password"
    config = config_for(tmp_path, target, inbox)

    done = backup(config, "postgres")
    doctor = cli(config, "doctor")

    assert done.returncode == 1
    error = newest(tmp_path).manifest().components["postgres"].error
    assert "refused user 'rag_flow' (wrong password?)" in error and "POSTGRES_PASSWORD" in error
    assert "not-the-password" not in done.stdout + done.stderr + error
    assert doctor.returncode != 0 and "postgres" in doctor.stderr  # "N check(s) failed: ..., postgres"
    assert "not-the-password" not in doctor.stdout + doctor.stderr


@pytest.mark.fault("PostgreSQL hung (SIGSTOP) after the connection, in the middle of a query",
                   "the statement's deadline (postgres.stall_timeout_seconds) shuts the connection's socket: a "
                   "TimeoutError naming host:port, instead of waiting forever on a server that still acknowledges TCP")
def test_a_query_to_a_postgres_hung_after_connecting_ends_at_its_deadline(private_postgres):
    cfg = private_postgres.settings("postgres")
    conn = connect(cfg)
    private_postgres.pause()
    try:
        with pytest.raises(TimeoutError) as ended, deadline(conn, 2, "the row counts", f"127.0.0.1:{cfg.port}"):
            conn.execute("SELECT 1")
    finally:
        private_postgres.resume()
        conn.close()
    assert f"PostgreSQL at 127.0.0.1:{cfg.port} did not answer the row counts within 2s" in str(ended.value)


def leftovers(server: PrivatePostgres) -> list[str]:
    """Scratch databases and loading roles of restores into rag_flow, and rag_flow refusing connections."""
    with server.connection() as conn:
        found = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'rag\\_flow\\_\\_restore\\_%' "
            "UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE 'ragflow\\_backup\\_load\\_%' "
            "UNION ALL SELECT datname || ' refuses connections' FROM pg_database "
            "WHERE datname = 'rag_flow' AND NOT datallowconn").fetchall()]
    return found


def restoring(server: PrivatePostgres) -> bool:
    with server.connection() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore' "
                            "AND datname LIKE 'rag\\_flow\\_\\_restore\\_%'").fetchone()[0] > 0


def first_body(server: PrivatePostgres) -> str:
    with server.connection("rag_flow") as conn:
        return conn.execute("SELECT body FROM chunk WHERE id = 1").fetchone()[0]


def backed_up_then_changed(config: Path, server: PrivatePostgres) -> None:
    assert backup(config, "postgres").returncode == 0
    with server.connection("rag_flow") as conn:
        conn.execute("UPDATE chunk SET body = 'after the backup' WHERE id = 1")


def restore_while(config: Path, server: PrivatePostgres, strike: Callable[[], None]) -> subprocess.CompletedProcess:
    """`restore --yes`, struck (the server paused or restarted) once pg_restore loads; the server answers again
    before this returns."""
    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault("done", cli(config, "restore", "--yes", timeout=400)))
    runner.start()
    try:
        wait_for(lambda: restoring(server) or "done" in result, "pg_restore to be loading", timeout=120, interval=0.01)
        strike()
        runner.join(300)
    finally:
        server.resume()
        runner.join(300)
        server.wait_ready()
    return result["done"]


def assert_the_next_restore_completes(config: Path, server: PrivatePostgres) -> None:
    again = cli(config, "restore", "--yes", timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert first_body(server) != "after the backup"
    assert leftovers(server) == []


@pytest.mark.fault("PostgreSQL hung (SIGSTOP) in the middle of a restore",
                   "a watchdog asks the server SELECT 1 every few seconds; no answer within "
                   "postgres.stall_timeout_seconds kills pg_restore and cuts the restore's connections: the restore "
                   "fails saying the server gave no answer, the live database is as before (the swap is one "
                   "transaction); the scratch database and loading role are dropped by the next restore")
@pytest.mark.fault("PostgreSQL restarted in the middle of a restore",
                   "pg_restore loses its connection: the restore fails naming host:port and is rolled back from its "
                   "safety point, the live database holds its data from before; what the cut-off load left is "
                   "dropped at once or by the next restore")
@pytest.mark.parametrize("fault", ["hung", "restarted"])
def test_a_postgres_hung_or_restarted_mid_restore_leaves_the_live_database_as_it_was(tmp_path, private_postgres,
                                                                                     fault, inbox):
    config = config_for(tmp_path, postgres_target(private_postgres), inbox)
    backed_up_then_changed(config, private_postgres)

    done = restore_while(config, private_postgres, private_postgres.pause if fault == "hung" else private_postgres.restart)
    said = done.stdout + done.stderr

    if done.returncode == 0:  # the load had ended when the restart struck: the restore is whole
        assert fault == "restarted", said
        assert first_body(private_postgres) != "after the backup"
    else:
        if fault == "hung":
            assert f"PostgreSQL at 127.0.0.1:{private_postgres.port} gave no answer for 5s in the middle of a " \
                   f"restore (is the server hung?)" in said, said
        else:
            assert f"127.0.0.1:{private_postgres.port}" in said, said
        assert first_body(private_postgres) == "after the backup"
    assert_the_next_restore_completes(config, private_postgres)


@pytest.fixture
def postgres_container(private_postgres, testbed_env) -> Iterator[str]:
    """A container of the test's own, from the test bed's PostgreSQL image, labelled as RAGFlow's postgres service
    of a compose project of its own (returned); its tools reach the private server (PGHOST/PGPORT in its
    environment), which the test can hang without touching the test bed's."""
    project = f"rbtb-fault-pg-{uuid.uuid4().hex[:8]}"
    engine = reach("the test bed's Docker engine (DOCKER_HOST)", lambda: clients.docker_client(testbed_env["DOCKER_HOST"]))
    image = reach("the test bed's PostgreSQL container", lambda: engine.containers.get(testbed_env["DOCKER_PG_CONTAINER"]).image)
    container = engine.containers.run(image, ["sleep", "infinity"], detach=True, name=project, network_mode="host",
                                      labels={"com.docker.compose.service": "postgres",
                                              "com.docker.compose.project": project},
                                      environment={"PGHOST": "127.0.0.1", "PGPORT": str(private_postgres.port)})
    try:
        yield project
    finally:
        container.remove(force=True)
        engine.close()


@pytest.mark.fault("PostgreSQL hung (SIGSTOP) in the middle of a docker-mode restore",
                   "the watchdog cuts the exec that streams the archive to the container's pg_restore and the "
                   "restore's connections: the restore fails saying the server gave no answer, the live database "
                   "is as before; the next restore drops what the cut-off one left and completes")
def test_a_postgres_hung_mid_docker_mode_restore_leaves_the_live_database_as_it_was(tmp_path, private_postgres,
                                                                                    postgres_container, inbox,
                                                                                    testbed_env):
    target = postgres_target(private_postgres)
    target.section.update(mode="docker", compose_project=postgres_container)
    config = config_for(tmp_path, target, inbox, docker={"host": testbed_env["DOCKER_HOST"]})
    backed_up_then_changed(config, private_postgres)

    done = restore_while(config, private_postgres, private_postgres.pause)
    said = done.stdout + done.stderr

    assert done.returncode != 0, said
    assert f"PostgreSQL at 127.0.0.1:{private_postgres.port} gave no answer for 5s in the middle of a restore" in said
    assert first_body(private_postgres) == "after the backup"
    assert_the_next_restore_completes(config, private_postgres)


@pytest.mark.fault("PostgreSQL: wrong password at restore time",
                   "the restore is refused before its safety point, saying the server refused the user and to check "
                   "postgres.password / POSTGRES_PASSWORD; no traceback, nothing changed")
def test_a_restore_with_a_wrong_postgres_password_says_which_setting_to_fix(tmp_path, private_postgres, inbox):
    target = postgres_target(private_postgres)
    config = config_for(tmp_path, target, inbox)
    assert backup(config, "postgres").returncode == 0
    target.section["password"] = "not-the-password"
    wrong = config_for(tmp_path, target, inbox)

    done = cli(wrong, "restore", "--yes")

    assert done.returncode != 0
    assert "refused user 'rag_flow' (wrong password?)" in done.stderr and "POSTGRES_PASSWORD" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "not-the-password" not in done.stdout + done.stderr
    assert first_body(private_postgres).endswith("c4ca4238a0b923820dcc509a6f75849b")  # md5('1'): as before
