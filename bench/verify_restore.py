"""Figure 6: verify and restore times for a benchmark dataset, and extrapolated to the requirements' sizes
(10 GB of MySQL, 1 TB of objects) against their objectives (verify < 5 min, restore < 30 min).

Measured: `verify_point` of a MySQL point (SHA-256, gzip stream, rows recounted); a full re-hash of the
MinIO mirror (every file's MD5 against the index; the nightly verify samples only 50); our MySQL restore
into a scratch database against `gzip -dc dump | mysql`; our MinIO restore into an empty MinIO against
`mc mirror` of a plain copy of the same objects into another empty MinIO.

Extrapolation: each time is linear in bytes (MySQL: InnoDB data bytes; objects: object bytes, at the
measured small/large mix), so time x (requirement size / measured size). It ignores caches (the
measured data fit in RAM: a real 1 TB runs at disk speed, likely slower) and per-object costs at a
different object-size mix.

    python bench/verify_restore.py [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MiB, Row, mc_env, print_table, publish, put_objects, run_quiet, small_objects, timed  # noqa: E402
from bench.mysql_dump import data_bytes, drop, grow_database  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed import settings as testbed_settings  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402

MYSQL_SIZE, OBJECT_SIZE = 10 * 10**9, 10**12  # the requirements' 10 GB of MySQL and 1 TB of objects
VERIFY_OBJECTIVE, RESTORE_OBJECTIVE = 5 * 60, 30 * 60


def rehash_mirror(store) -> int:
    """MD5 of every current mirror file against the index; returns the bytes read (raises on a mismatch)."""
    from core.atomic import digest_of

    total = 0
    for bucket in store.buckets():
        for key in store.keys(bucket):
            entry = store.entry(bucket, key)
            if entry is None:
                continue
            if entry.md5 and digest_of(entry.path, "md5", 1 << 20) != entry.md5:
                raise RuntimeError(f"mirror file of s3://{bucket}/{key} does not match its MD5")
            total += entry.size
    return total


def anchor_mysql_restore(cfg, database: str, dump: Path, work: Path) -> None:
    """`gzip -dc dump | mysql`: the dump names its database, so the source is dropped and re-created."""
    option_file = work / "client.cnf"
    option_file.write_text(f"[client]\nuser={cfg.user}\npassword=\"{cfg.password.get_secret_value()}\"\n"
                           f"host={cfg.host}\nport={cfg.port}\nprotocol=TCP\n")
    option_file.chmod(0o600)
    drop(cfg, database)
    done = subprocess.run(["bash", "-c", f"set -o pipefail; gzip -dc {dump} | mysql "
                           f"--defaults-extra-file={option_file}"], stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"gzip -dc | mysql failed: {done.stderr.decode()[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="32 MiB of rows, 1,000 small + 2 large objects")
    args = parser.parse_args()
    rows_target, small, large = (32 * MiB, 1_000, 2) if args.quick else (512 * MiB, 5_000, 10)
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-restore-"))
    database = f"rb_bench_{uuid.uuid4().hex[:8]}"
    cfg = testbed_settings.mysql(env, database=database)
    servers = {name: PrivateMinio(env, work / name) for name in ("source", "ours", "mc")}
    from actors.actions.runs import run_component
    from actors.actions.verify import verify_point
    from actors.minio import mirror as minio_mirror
    from actors.minio import restore as minio_restore
    from actors.mysql import restore as mysql_restore
    from actors.mysql.load import drop_database, scratch_name
    from core.config import Settings
    from core.points import Storage

    scratch = scratch_name(database, "bench", uuid.uuid4().hex[:6])
    try:
        for server in servers.values():
            server.data.mkdir()
            server.start()
        source = servers["source"]
        items = small_objects(small, 20) + [(f"large-{i % 2}", f"video/{i:03d}.bin", 50 * MiB) for i in range(large)]
        object_bytes = put_objects(source.client(), items)
        grow_database(cfg, database, rows_target)
        rows_bytes = data_bytes(cfg, database)
        settings = Settings(storage_root=work / "backups", mysql=cfg, minio=source.settings())
        if not minio_mirror.reconcile(settings).complete:
            raise RuntimeError("the mirror of the benchmark data failed")
        point = Storage(settings.storage_root).new_point(["mysql"])
        if run_component(settings, point, "mysql").status != "ok":  # type: ignore[union-attr]
            raise RuntimeError("the MySQL backup of the benchmark data failed")
        print(f"  dataset: {rows_bytes / MiB:,.0f} MiB of rows, {len(items):,} objects ({object_bytes / MiB:,.0f} MiB)",
              flush=True)

        with timed() as verify_mysql:
            report = verify_point(settings, point)
        if not report.ok:
            raise RuntimeError(f"verify found problems: {report.problems()}")
        with timed() as verify_objects:
            rehash_mirror(minio_mirror.open_store(settings))
        print(f"  verify: MySQL point {verify_mysql.wall:.1f} s, mirror re-hash {verify_objects.wall:.1f} s", flush=True)

        record = point.manifest().components["mysql"]
        with timed() as restore_mysql:
            result = mysql_restore.restore(settings, point, record, target_database=scratch)
        drop_database(settings, scratch)
        if result.expected != result.found:
            raise RuntimeError(f"our MySQL restore differs: {result.mismatches}")
        with timed() as anchor_mysql:
            anchor_mysql_restore(cfg, database, point.folder / record.artifacts[0].name, work)
        print(f"  MySQL restore: ours {restore_mysql.wall:.1f} s, gzip -dc | mysql {anchor_mysql.wall:.1f} s", flush=True)

        with timed() as restore_objects:
            restored = minio_restore.restore(settings, datetime.now(timezone.utc),
                                             target_endpoint_settings=servers["ours"].settings())
        if not restored.ok:
            raise RuntimeError(f"our MinIO restore found problems: {restored.problems[:3]}")
        plain = work / "plain"
        plain.mkdir()
        run_quiet([env["MC"], "mirror", "--quiet", "bench/", str(plain)], env=mc_env(source))
        target_env = mc_env(servers["mc"], "target")
        with timed() as anchor_objects:
            for bucket in sorted(p.name for p in plain.iterdir()):
                run_quiet([env["MC"], "mb", "--quiet", f"target/{bucket}"], env=target_env)
                run_quiet([env["MC"], "mirror", "--quiet", str(plain / bucket), f"target/{bucket}"], env=target_env)
        print(f"  MinIO restore: ours {restore_objects.wall:.1f} s, mc mirror {anchor_objects.wall:.1f} s", flush=True)
    finally:
        for server in servers.values():
            server.kill()
        with contextlib.suppress(Exception):
            drop_database(settings, scratch)  # type: ignore[possibly-undefined]
        drop(cfg, database)
        shutil.rmtree(work, ignore_errors=True)

    size = f"{rows_bytes / MiB:,.0f} MiB of InnoDB rows; {len(items):,} objects, {object_bytes / MiB:,.0f} MiB"
    mysql_x, objects_x = MYSQL_SIZE / rows_bytes, OBJECT_SIZE / object_bytes
    big = "extrapolated to 10 GB MySQL + 1 TB objects (linear in bytes)"
    rows = [
        Row("6 verify MySQL point", verify_mysql.wall, None, "s", "lower", size, "", "verify_point: SHA-256, gzip, rows"),
        Row("6 verify mirror (full re-hash)", verify_objects.wall, None, "s", "lower", size, "",
            "MD5 of every mirror file; the nightly verify samples 50"),
        Row("6 restore MySQL", restore_mysql.wall, anchor_mysql.wall, "s", "lower", size, "gzip -dc | mysql",
            "ours: into a scratch database, rows recounted, then swapped in"),
        Row("6 restore MinIO", restore_objects.wall, anchor_objects.wall, "s", "lower", size,
            "mc mirror of a plain copy", "ours: from the mirror to a point in time, into an empty MinIO, compared"),
        Row("6 verify at 10 GB + 1 TB (nightly: MySQL + 50 samples)", verify_mysql.wall * mysql_x, VERIFY_OBJECTIVE,
            "s", "lower", big, "requirement: < 5 min", "MySQL verify x (10 GB / measured)"),
        Row("6 verify at 10 GB + 1 TB (full mirror re-hash)", verify_mysql.wall * mysql_x + verify_objects.wall * objects_x,
            VERIFY_OBJECTIVE, "s", "lower", big, "requirement: < 5 min", "a full re-hash of 1 TB is a weekly job, not nightly"),
        Row("6 restore at 10 GB + 1 TB", restore_mysql.wall * mysql_x + restore_objects.wall * objects_x,
            RESTORE_OBJECTIVE, "s", "lower", big, "requirement: < 30 min", "MySQL and MinIO restored one after the other"),
        Row("6 restore MySQL at 10 GB", restore_mysql.wall * mysql_x, RESTORE_OBJECTIVE, "s", "lower", big,
            "requirement: < 30 min", ""),
    ]
    publish("verify_restore", rows)
    print_table(rows, "figure 6: verify and restore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
