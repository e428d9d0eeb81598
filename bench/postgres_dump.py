"""Figure 8: our PostgreSQL backup and restore against plain `pg_dump -Fc` and `pg_restore` of the same data,
alternating runs; wall time and CPU time (this process and its children), as ratios.

    python bench/postgres_dump.py [--quick] [--runs N] [--mib 256]

Ours does more than the anchor, and the figure says what that costs: the backup counts rows in the dump's
snapshot and reads the archive back (pg_restore's COPY text, recounted) before keeping it; the restore loads
into a scratch database as a least-power role, reads the catalog, recounts, hands the tables over and swaps by
rename. The anchor's restore is `createdb` + `pg_restore -d` of the same archive, with the same --jobs.
The database is of its own on the test bed's PostgreSQL (dropped afterwards): the seeder's RAGFlow tables and
rows, then `document` doubled with fresh ids and random text until it holds --mib of table data.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MiB, Row, median, print_table, publish, timed  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed import settings as testbed_settings  # noqa: E402
from testbed.postgres_seed import connect, drop_database, seed_postgres  # noqa: E402


def grow(env: dict[str, str], database: str, target: int) -> int:
    """Double `document` (fresh ids, random text) until the database's tables hold `target` bytes."""
    with connect(env, database) as conn:
        while (size := conn.execute("SELECT sum(pg_table_size(oid)) FROM pg_class WHERE relkind = 'r' AND "
                                    "relnamespace = 'public'::regnamespace").fetchone()[0]) < target:
            conn.execute(
                "INSERT INTO document SELECT md5(random()::text || id), thumbnail, kb_id, parser_id, pipeline_id, "
                "parser_config, source_type, type, created_by, left(name, 60) || ' ' || left(md5(random()::text), 8), "
                "location, floor(random() * 1e7), floor(random() * 1e5), chunk_num, progress, "
                "'Page(1~' || floor(random() * 1000) || '): ' || encode(gen_random_bytes_compat(96), 'base64'), "
                "process_begin_at, process_duration, suffix, md5(random()::text), run, status, "
                "create_time + floor(random() * 1e9), create_date, update_time, update_date FROM document")
            conn.execute("ANALYZE document")
    return int(size)


RANDOM_BYTES = """CREATE OR REPLACE FUNCTION gen_random_bytes_compat(n int) RETURNS bytea LANGUAGE sql AS
$$ SELECT string_agg(md5(random()::text), '')::bytea FROM generate_series(1, (n + 31) / 32) $$"""


def plain_env(cfg, work: Path) -> dict[str, str]:
    passfile = work / "pgpass"
    passfile.write_text(f"*:*:*:*:{cfg.password.get_secret_value()}\n")
    passfile.chmod(0o600)
    return {**os.environ, "PGPASSFILE": str(passfile)}


def connection(cfg, database: str) -> list[str]:
    return ["-h", cfg.host, "-p", str(cfg.port), "-U", cfg.user, "-d", database, "-w"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 32 MiB of table data, 1 run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--mib", type=int, default=256, help="table data to dump, MiB")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    target = (32 if args.quick else args.mib) * MiB
    env = testbed_env.load()
    database = f"rb_bench_{uuid.uuid4().hex[:8]}"
    cfg = testbed_settings.postgres(env, database=database)
    from actors.postgres import backup as pg_backup
    from actors.postgres import restore as pg_restore
    from core.config import Settings
    from core.manifest import ComponentRecord
    from core.points import Storage

    work = Path(tempfile.mkdtemp(prefix="rb-bench-postgres-"))
    settings = Settings(storage_root=work / "b", postgres=cfg)
    log = logging.getLogger("bench")
    results: dict[str, dict[str, list[float]]] = {}
    restored = []
    try:
        seed_postgres(env, database, "small", 1)
        with connect(env, database) as conn:
            conn.execute(RANDOM_BYTES)
        data = grow(env, database, target)
        with connect(env, database) as conn:  # the helper is no part of RAGFlow's schema
            conn.execute("DROP FUNCTION gen_random_bytes_compat(int)")
        print(f"  seeded {data / MiB:,.0f} MiB of table data", flush=True)
        plain = plain_env(cfg, work)
        for run in range(runs):
            contenders = ["ours", "pg_dump -Fc"]
            if run % 2:
                contenders.reverse()  # alternate: neither always goes first
            point = Storage(settings.storage_root).new_point(["postgres"])
            for who in contenders:
                with timed() as timing:
                    if who == "ours":
                        result = pg_backup.backup(settings, point, log)
                    else:
                        subprocess.run(["pg_dump", "-Fc", "-f", str(work / "anchor.pgdump"),
                                        *connection(cfg, database)], env=plain, check=True)
                stats = results.setdefault(f"dump {who}", {"wall": [], "cpu": []})
                stats["wall"].append(timing.wall)
                stats["cpu"].append(timing.cpu)
                print(f"  run {run + 1} dump {who}: {timing.wall:.1f} s wall, {timing.cpu:.1f} s CPU", flush=True)
            # The point is not finished: the record as a run would write it.
            record = ComponentRecord(component="postgres", status="ok", started_at=point.manifest().created_at,
                                     finished_at=point.manifest().created_at, artifacts=result.artifacts,
                                     counts=result.counts, details=result.details)
            for who in reversed(contenders):
                name = f"{database}__r{run}{'o' if who == 'ours' else 'a'}"
                restored.append(name)
                with timed() as timing:
                    if who == "ours":
                        pg_restore.restore(settings, point, record, target_database=name)
                    else:
                        subprocess.run(["createdb", *connection(cfg, "postgres")[:-3], "-w", name], env=plain,
                                       check=True)
                        subprocess.run(["pg_restore", "--jobs", str(cfg.restore_jobs), "--no-owner",
                                        *connection(cfg, name), str(point.folder / pg_backup.ARTIFACT)],
                                       env=plain, check=True)
                stats = results.setdefault(f"restore {who}", {"wall": [], "cpu": []})
                stats["wall"].append(timing.wall)
                stats["cpu"].append(timing.cpu)
                print(f"  run {run + 1} restore {who}: {timing.wall:.1f} s wall, {timing.cpu:.1f} s CPU", flush=True)
                drop_database(name, env)
            shutil.rmtree(point.folder)
    finally:
        for name in [database, *restored]:
            drop_database(name, env)
        shutil.rmtree(work, ignore_errors=True)
    size_text = f"{data / MiB:,.0f} MiB of PostgreSQL table data"
    note = f"median of {runs} alternating runs" + ("" if runs >= 3 else " (quick: fewer than 3)")
    rows = []
    for step, anchor, extra in (("dump", "pg_dump -Fc", "ours also counts rows in the snapshot and reads the "
                                                       "archive back"),
                                ("restore", "pg_dump -Fc", "ours loads as a least-power role into a scratch "
                                                           "database, checks the catalog and counts, swaps")):
        o = {k: median(v) for k, v in results[f"{step} ours"].items()}
        a = {k: median(v) for k, v in results[f"{step} {anchor}"].items()}
        label = anchor if step == "dump" else "createdb + pg_restore"
        rows += [Row(f"8 PostgreSQL {step} wall, ours vs {label}", o["wall"], a["wall"], "s", "lower", size_text,
                     label, note),
                 Row(f"8 PostgreSQL {step} CPU, ours vs {label}", o["cpu"], a["cpu"], "CPU s", "lower", size_text,
                     label, f"{note}; {extra}")]
    publish("postgres_dump", rows)
    print_table(rows, "figure 8: PostgreSQL dump and restore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
