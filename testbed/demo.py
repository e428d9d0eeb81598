"""`make demo`: seed a RAGFlow-shaped dataset into the test bed and run the product against it.

Uses `.demo/ragflow-backup.yml`, the storage root `.demo/backups/` and the seeded RAGFlow folder
`.demo/ragflow/docker/`. A second run first removes what the previous one seeded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from agent import clients
from testbed import env as testbed_env
from testbed import settings as testbed_settings
from testbed.seed import seed

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
CONFIG = DEMO / "ragflow-backup.yml"
RAGFLOW_DIR = DEMO / "ragflow" / "docker"
DATASET_RECORD = DEMO / "dataset.json"
DATABASE = "rag_flow"


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
        "broker": {"url": f"redis://{env['REDIS_HOST']}:{env['REDIS_PORT']}/0"},
        "mysql": {"host": env["MYSQL_HOST"], "port": int(env["MYSQL_PORT"]), "database": DATABASE},
        "minio": {"endpoint": env["MINIO_ENDPOINT"]},
        # The test bed is shared with the tests: name the demo's indices rather than ragflow_*.
        "search": {"engine": "elasticsearch", "url": env["ES_URL"], "repository": "ragflow_backup_demo",
                   "repository_path": f"{env['SNAPSHOT_ROOT']}/demo", "indices": indices},
        "redis": {"enabled": True, "host": env["REDIS_HOST"], "port": int(env["REDIS_PORT"]), "db": 1},
        "docker": {"host": env["DOCKER_HOST"]},
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
    return 0


def run_cli(*args: str) -> int:
    cli = Path(sys.executable).parent / "ragflow-backup"
    print(f"\n== {cli.name} --config {CONFIG.relative_to(ROOT)} {' '.join(args)}", flush=True)
    return subprocess.run([str(cli), "--config", str(CONFIG), *args]).returncode


if __name__ == "__main__":
    sys.exit(main())
