"""Figure 5: backup storage after 30 simulated days, as a multiple of the production data, against the
requirements' plan of full copies (1.8 TB of backups for 100 GB of data: 18x) and their limit (< 2x).

A day: 10 % of the objects are overwritten and 10 % of the `document` rows rewritten at the source; then
the mirror reconciles, the nightly MySQL backup makes a daily point (promoted to weekly/monthly by hard
links), retention prunes with the 7/4/12 policy and the mirror's versions prune runs with the defaults
(older than 30 days dropped, then the oldest until the rest fit in minio.version_budget_percent of the
mirror), all on a simulated clock. Backup bytes count each hard-linked file once (du semantics: st_size per inode).

The MySQL points use the defaults: a full dump every mysql.full_every_days (7), change points between
(the base hard-linked, plus the rows changed since it). The churn is the worst case for them: rows rewritten
at random places with incompressible text, so every day's changes are new bytes and a change point holds
everything changed since its base (a real RAGFlow mostly appends documents and updates recent ones).

    python bench/storage_30_days.py [--quick] [--days 30]
"""
from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import KiB, MiB, Row, du_bytes, print_table, publish, put_objects  # noqa: E402
from bench.mysql_dump import data_bytes, drop, grow_database  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed import settings as testbed_settings  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402

PLAN_MULTIPLE = 18.0  # Appendix C: 1.8 TB of backups for 100 GB of production data
LIMIT_MULTIPLE = 2.0  # "Backup storage < 2x production data size"
START = datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc)  # a Monday, 02:00 (the default backup time)


def objects_plan(count: int, seed: int = 5) -> list[tuple[str, str, int]]:
    import math

    rng = random.Random(seed)  # log-uniform 1 KiB - 1 MiB, like an upload history
    return [(f"kb-{i % 10:02d}", f"doc-{i:05d}.bin", int(math.exp(rng.uniform(math.log(KiB), math.log(MiB)))))
            for i in range(count)]


def churn_rows(cfg, database: str, share: float) -> None:
    from core.clients import mysql_connection

    with contextlib.closing(mysql_connection(cfg, database)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE document SET progress_msg = CONCAT('Page(1~', FLOOR(RAND() * 1000), '): ', "
                    "TO_BASE64(RANDOM_BYTES(96))), update_time = update_time + 86400000 WHERE RAND() < %s", (share,))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 objects and 16 MiB of rows")
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    count, rows_target = (300, 16 * MiB) if args.quick else (1_500, 256 * MiB)
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-storage-"))
    database = f"rb_bench_{uuid.uuid4().hex[:8]}"
    cfg = testbed_settings.mysql(env, database=database)
    minio = PrivateMinio(env, work / "data")
    minio.data.mkdir()
    minio.start()
    from actors.actions.retention import prune
    from actors.actions.runs import run_component
    from actors.minio import mirror as minio_mirror
    from actors.minio import upkeep as minio_upkeep
    from core.config import Settings
    from core.points import Storage

    clock = [START]
    real_now = minio_mirror._now
    minio_mirror._now = lambda: clock[0]  # the mirror's versions are dated by the simulated day
    try:
        client = minio.client()
        items = objects_plan(count)
        object_bytes = put_objects(client, items)
        grow_database(cfg, database, rows_target, size="tiny")
        settings = Settings(storage_root=work / "backups", mysql=cfg, minio=minio.settings())
        storage = Storage(settings.storage_root)
        rng = random.Random(30)
        for day in range(args.days):
            clock[0] = START + timedelta(days=day)
            if day:  # day 0 is the first full backup of the data as seeded
                put_objects(client, rng.sample(items, max(1, len(items) // 10)))
                churn_rows(cfg, database, 0.10)
            report = minio_mirror.reconcile(settings)
            if not report.complete:
                raise RuntimeError(f"reconcile failed on day {day}: {report.errors[:3]}")
            point = storage.new_point(["mysql"], at=clock[0])
            record = run_component(settings, point, "mysql")
            if record is None or record.status != "ok":
                raise RuntimeError(f"the MySQL backup failed on day {day}: {record and record.error}")
            prune(storage, settings, dry_run=False, now=clock[0])
            minio_upkeep.prune_versions(settings, now=clock[0])
            if day % 5 == 4 or day == args.days - 1:
                print(f"  day {day + 1}: {du_bytes(settings.storage_root) / MiB:,.1f} MiB of backups, "
                      f"{len(storage.points())} points", flush=True)
        rows_bytes = data_bytes(cfg, database)
        mirror_bytes = du_bytes(settings.storage_root / settings.minio.mirror_dir)
        total = du_bytes(settings.storage_root)
        points = {p.ref for p in storage.points()}
        since, _ = minio_mirror.open_store(settings).pitr_since()
        window_days = (clock[0] - since).total_seconds() / 86_400 if since else 0.0
    finally:
        minio_mirror._now = real_now
        minio.kill()
        drop(cfg, database)
        shutil.rmtree(work, ignore_errors=True)
    production = object_bytes + rows_bytes
    size = (f"{count:,} objects ({object_bytes / MiB:,.0f} MiB) + {rows_bytes / MiB:,.0f} MiB of InnoDB rows; "
            f"{args.days} days of 10 % churn")
    note = (f"{len(points)} points kept ({', '.join(sorted(points))[:120]}...); mirror with versions in a "
            f"{settings.minio.version_budget_percent:g} % budget ({window_days:.1f} days of any-moment history): "
            f"{mirror_bytes / MiB:,.0f} MiB; MySQL points: {(total - mirror_bytes) / MiB:,.0f} MiB")
    rows = [Row("5 storage / production after 30 days vs the plan", total / production, PLAN_MULTIPLE, "x",
                "lower", size, "requirements' plan (1.8 TB for 100 GB)", note),
            Row("5 storage / production after 30 days vs the limit", total / production, LIMIT_MULTIPLE, "x",
                "lower", size, "requirement: < 2x", "same run"),
            Row("5 MinIO mirror / object bytes", mirror_bytes / object_bytes,
                1 + (settings.minio.version_budget_percent or 0) / 100, "x", "lower", size,
                "current + the version budget", "mirror incl. its index and versions"),
            Row("5 MySQL points / InnoDB bytes", (total - mirror_bytes) / rows_bytes, 7 * 0.1 + 4 + 1 + 1, "x",
                "lower", size, "plan at 30 days: 7 x 10 % + 4 weekly + 1-2 monthly full",
                f"full dumps every {settings.mysql.full_every_days} days, change points between; promotions "
                "hard-linked")]
    publish("storage_30_days", rows)
    print_table(rows, "figure 5: storage over 30 days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
