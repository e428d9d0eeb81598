"""`make demo`: seed a RAGFlow-shaped dataset into the test bed and run the product against it.

Uses `.demo/ragflow-backup.yml`, the storage root `.demo/backups/` and the seeded RAGFlow folder
`.demo/ragflow/docker/`. A second run first removes what the previous one seeded.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from core import clients
from testbed import env as testbed_env
from testbed import polling
from testbed import settings as testbed_settings
from testbed.seed import seed

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
CONFIG = DEMO / "ragflow-backup.yml"
RAGFLOW_DIR = DEMO / "ragflow" / "docker"
DATASET_RECORD = DEMO / "dataset.json"
DATABASE = "rag_flow"
OFFSITE_REPO = DEMO / "offsite" / "ragflow"
OFFSITE_PASSWORD = DEMO / "offsite.pass"


def offsite_password() -> Path:
    """The demo repository's password: made once, kept with the repository (a real one lives elsewhere)."""
    if not OFFSITE_PASSWORD.is_file():
        import secrets
        import shutil

        shutil.rmtree(OFFSITE_REPO, ignore_errors=True)  # a repository whose password is gone is unreadable
        fd = os.open(OFFSITE_PASSWORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.close(fd)
    return OFFSITE_PASSWORD


def forget_previous_seed(env: dict[str, str]) -> None:
    if not DATASET_RECORD.is_file():
        return
    previous = json.loads(DATASET_RECORD.read_text())
    minio = clients.minio_client(testbed_settings.minio(env))
    for bucket in previous.get("buckets", []):
        if minio.bucket_exists(bucket):
            for item in minio.list_objects(bucket, recursive=True, include_version=True):
                minio.remove_object(bucket, item.object_name, version_id=item.version_id)
            minio.remove_bucket(bucket)
    search = clients.search_client(testbed_settings.search("elasticsearch", env))
    for index in previous.get("indices", []):
        search.options(ignore_status=404).indices.delete(index=index)
    with clients.mysql_connection(testbed_settings.mysql(env), database="") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")


def write_config(env: dict[str, str], indices: list[str]) -> None:
    # No secret in our file: they are read from the seeded RAGFlow folder's .env.
    config = {
        "storage_root": "backups",
        "ragflow_dir": "ragflow/docker",
        "broker": {"url": f"redis://{env['REDIS_HOST']}:{env['REDIS_PORT']}/2"},
        "mysql": {"host": env["MYSQL_HOST"], "port": int(env["MYSQL_PORT"]), "database": DATABASE},
        "minio": {"endpoint": env["MINIO_ENDPOINT"]},
        # The test bed is shared with the tests: name the demo's indices rather than ragflow_*.
        "search": {"engine": "elasticsearch", "url": env["ES_URL"], "repository": "ragflow_backup_demo",
                   "repository_path": f"{env['SNAPSHOT_ROOT']}/demo", "indices": indices},
        "redis": {"enabled": True, "host": env["REDIS_HOST"], "port": int(env["REDIS_PORT"]), "db": 1},
        "docker": {"host": env["DOCKER_HOST"]},
        "watch": {"debounce_seconds": 1},
        "metrics": {"port": 19108},
        # The offsite copy: a folder standing in for a USB disk; its password in a 0600 file, not here.
        "offsite": {"enabled": True, "repository": str(OFFSITE_REPO), "password_file": str(offsite_password())},
    }
    CONFIG.write_text("# Written by `make demo` (testbed/demo.py).\n" + yaml.safe_dump(config, sort_keys=False))


def main() -> int:
    env = testbed_env.load()
    DEMO.mkdir(exist_ok=True)
    (DEMO / "backups").mkdir(exist_ok=True)
    forget_previous_seed(env)
    print("== seeding a RAGFlow-shaped dataset", flush=True)
    dataset = seed(
        mysql=testbed_settings.mysql(env, database=DATABASE), database=DATABASE,
        minio=testbed_settings.minio(env), search=testbed_settings.search("elasticsearch", env),
        redis=testbed_settings.redis(env, db=1), ragflow_dir=RAGFLOW_DIR, env=env,
        size=os.environ.get("DEMO_SIZE", "small"),
    )
    DATASET_RECORD.write_text(json.dumps({"buckets": dataset.buckets, "indices": dataset.indices}))
    objects = sum(len(names) for names in dataset.objects.values())
    print(f"   {len(dataset.tenant_ids)} tenants, {len(dataset.kb_ids)} knowledge bases, {len(dataset.doc_ids)} documents; "
          f"{sum(dataset.row_counts.values())} rows in {len(dataset.row_counts)} tables; {objects} objects in "
          f"{len(dataset.buckets)} buckets; {sum(dataset.doc_counts.values())} chunks in {len(dataset.indices)} indices")
    write_config(env, dataset.indices)
    for step in (["doctor"], ["backup", "--local"], ["verify"], ["list"]):
        code = run_cli(*step)
        if code != 0:
            print(f"\n`{' '.join(step)}` exited {code}", file=sys.stderr)
            return code
    code = show_the_agent(env, dataset)
    if code != 0:
        return code
    # The monthly restore drill, by hand: scratch database, renamed indices, a scratch folder.
    code = run_cli("drill")
    if code != 0:
        return code
    # The second copy: the newest point and the MinIO mirror into the restic repository, then its status.
    for step in (["offsite", "copy"], ["offsite", "status"], ["audit", "--since", "1h"]):
        code = run_cli(*step)
        if code != 0:
            print(f"\n`{' '.join(step)}` exited {code}", file=sys.stderr)
            return code
    return 0


def wait_for(condition, what: str, timeout: float = 90) -> None:
    try:
        polling.wait_for(condition, what, timeout=timeout, interval=0.2)
    except AssertionError as exc:
        raise SystemExit(f"demo: {exc}; see {DEMO / 'agent.log'}") from None


def show_the_agent(env: dict[str, str], dataset) -> int:
    """Run the agent and workers for a short while: objects reach the mirror, an edit reaches Git."""
    from actors.config.backup import history
    from core.config import load_settings
    from core.mirror_store import MirrorStore

    settings = load_settings(CONFIG)
    cli = Path(sys.executable).parent / "ragflow-backup"
    print(f"\n== {cli.name} --config {CONFIG.relative_to(ROOT)} run   (agent + workers, for a short while)", flush=True)
    log = (DEMO / "agent.log").open("wb")  # fresh: "agent started" must be this run's
    agent = subprocess.Popen([str(cli), "--config", str(CONFIG), "run"], stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: "agent started" in (DEMO / "agent.log").read_text(), "the agent to start")
        store = MirrorStore(settings.storage_root / settings.minio.mirror_dir)
        minio = clients.minio_client(testbed_settings.minio(env))
        new_bucket = uuid.uuid4().hex  # RAGFlow makes a 32-hex bucket per knowledge base
        minio.make_bucket(new_bucket)
        record = json.loads(DATASET_RECORD.read_text())
        DATASET_RECORD.write_text(json.dumps({**record, "buckets": record["buckets"] + [new_bucket]}))
        kb = dataset.kb_ids[0]
        writes = {(new_bucket, "handbook.pdf"): b"%PDF-1.7 a new knowledge base's first document",
                  (kb, "added-by-the-demo.txt"): b"one more document in an existing knowledge base"}
        for (bucket, key), data in writes.items():
            minio.put_object(bucket, key, io.BytesIO(data), len(data))
            print(f"   put {bucket}/{key}")
        history_before = len(history(settings, 100))
        env_file = RAGFLOW_DIR / ".env"
        env_file.write_text(env_file.read_text() + f"# edited by the demo at {time.strftime('%H:%M:%S')}\n")
        print(f"   edited {env_file.relative_to(ROOT)}")
        for (bucket, key), data in writes.items():
            wait_for(lambda: (e := store.entry(bucket, key)) is not None and e.path.read_bytes() == data, f"{bucket}/{key}")
            entry = store.entry(bucket, key)
            print(f"   mirrored {bucket}/{key} -> {entry.path.relative_to(ROOT)}")
        wait_for(lambda: len(history(settings, 100)) > history_before, "the config commit")
        for step in (["config", "log", "-n", "3"], ["status"], ["queue"]):
            run_cli(*step)
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(120)
    print(f"\nagent stopped (exit {agent.returncode}); its log: {(DEMO / 'agent.log').relative_to(ROOT)}")
    return agent.returncode


def run_cli(*args: str) -> int:
    cli = Path(sys.executable).parent / "ragflow-backup"
    print(f"\n== {cli.name} --config {CONFIG.relative_to(ROOT)} {' '.join(args)}", flush=True)
    return subprocess.run([str(cli), "--config", str(CONFIG), *args]).returncode


if __name__ == "__main__":
    sys.exit(main())
