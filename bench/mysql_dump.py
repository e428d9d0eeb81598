"""Figure 4: our MySQL backup against a raw `mysqldump --single-transaction ... | gzip` of the same database,
alternating runs; wall time, CPU time (ours: this process and mysqldump; the anchor: the shell pipeline)
and output size. `| zstd -T0` is measured too where a zstd binary is installed.

    python bench/mysql_dump.py [--quick] [--runs N] [--gib 1.0]

The database is of its own on the test bed's MariaDB (dropped afterwards): the seeder's RAGFlow schema
and rows, then the `document` table grown by INSERT ... SELECT doubling, each copy with fresh ids and
random text so the rows do not compress better than real ones.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import GiB, MiB, Row, median, print_table, publish, timed  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed import settings as testbed_settings  # noqa: E402


def data_bytes(cfg, database: str) -> int:
    from core.clients import mysql_connection

    with contextlib.closing(mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COALESCE(SUM(data_length), 0) FROM information_schema.tables WHERE table_schema=%s",
                    (database,))
        return int(cur.fetchone()[0])


def grow_database(cfg, database: str, target: int, size: str = "small") -> int:
    """Create `database` with the seeder's schema and rows, then double `document` until the data reaches
    `target` bytes (InnoDB data_length). Returns the data bytes."""
    from core.clients import mysql_connection
    from testbed.seed import SIZES, _plan, seed_mysql

    seed_mysql(lambda name: mysql_connection(cfg, name), database, _plan(SIZES[size], 1))
    with contextlib.closing(mysql_connection(cfg, database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM document")
        rows = cur.fetchone()[0]
        while True:
            cur.execute("ANALYZE TABLE document")
            cur.fetchall()
            if data_bytes(cfg, database) >= target:
                break
            # Fresh ids and a few hundred bytes of random text per copy: realistic compression, unique keys.
            cur.execute(
                "INSERT INTO document (id, thumbnail, kb_id, parser_id, parser_config, source_type, type, created_by,"
                " name, location, size, token_num, chunk_num, progress, progress_msg, process_begin_at,"
                " process_duration, suffix, content_hash, run, status, create_time, create_date, update_time,"
                " update_date)"
                " SELECT REPLACE(UUID(), '-', ''), thumbnail, kb_id, parser_id, parser_config, source_type, type,"
                " created_by, CONCAT(LEFT(name, 60), ' ', LEFT(MD5(RAND()), 8)), location, FLOOR(RAND() * 1e7),"
                " FLOOR(RAND() * 1e5), chunk_num, progress,"
                " CONCAT('Page(1~', FLOOR(RAND() * 1000), '): ', TO_BASE64(RANDOM_BYTES(96)), '\\nIndexing done.'),"
                " process_begin_at, process_duration, suffix, MD5(RAND()), run, status,"
                " create_time + FLOOR(RAND() * 1e9),"
                " create_date, update_time, update_date FROM document")
            rows *= 2
            print(f"  document: {rows:,} rows", flush=True)
    return data_bytes(cfg, database)


def drop(cfg, database: str) -> None:
    from core.clients import mysql_connection

    with contextlib.closing(mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")


def ours(settings, work: Path, codec: str = "gzip") -> tuple[int, float]:
    """Our backup of the database into a point; (compressed bytes, plain bytes)."""
    from actors.mysql import backup as mysql
    from core.points import Storage

    settings = settings.model_copy(update={"mysql": settings.mysql.model_copy(update={"compression": codec})})
    point = Storage(work).new_point(["mysql"])
    result = mysql.backup(settings, point, logging.getLogger("bench"))
    size = result.artifacts[0].bytes
    shutil.rmtree(point.folder)
    return size, result.details["uncompressed_bytes"]


def anchor(cfg, database: str, work: Path, compressor: str) -> int:
    """mysqldump | <compressor> > file, the connection settings in an option file (not in argv)."""
    from actors.mysql.backup import BASE_OPTIONS

    option_file = work / "client.cnf"
    option_file.write_text(f"[client]\nuser={cfg.user}\npassword=\"{cfg.password.get_secret_value()}\"\n"
                           f"host={cfg.host}\nport={cfg.port}\nprotocol=TCP\n")
    option_file.chmod(0o600)
    out = work / "anchor.sql.out"
    pipeline = (f"set -o pipefail; mysqldump --defaults-extra-file={option_file} {' '.join(BASE_OPTIONS)} "
                f"--databases {database} | {compressor} > {out}")
    done = subprocess.run(["bash", "-c", pipeline], stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"{pipeline} failed: {done.stderr.decode()[-500:]}")
    size = out.stat().st_size
    out.unlink()
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 64 MiB of rows, 1 run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--gib", type=float, default=1.0, help="rows to dump (InnoDB data), GiB")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    target = 64 * MiB if args.quick else int(args.gib * GiB)
    env = testbed_env.load()
    database = f"rb_bench_{uuid.uuid4().hex[:8]}"
    cfg = testbed_settings.mysql(env, database=database)
    from core.config import Settings

    work = Path(tempfile.mkdtemp(prefix="rb-bench-mysql-"))
    anchors = {"gzip": "gzip"}
    if shutil.which("zstd"):
        anchors["zstd -T0"] = "zstd -q -T0"
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with timed() as seeding:
            data = grow_database(cfg, database, target)
        print(f"  seeded {data / MiB:,.0f} MiB of rows in {seeding.wall:.0f} s", flush=True)
        settings = Settings(storage_root=work, mysql=cfg)
        plain = 0.0
        for run in range(runs):
            contenders = ["ours", "ours zstd", *anchors]
            if run % 2:
                contenders.reverse()  # alternate: neither always goes first
            for who in contenders:
                with timed() as timing:
                    if who.startswith("ours"):
                        size, plain = ours(settings, work, "zstd" if who == "ours zstd" else "gzip")
                    else:
                        size = anchor(cfg, database, work, anchors[who])
                stats = results.setdefault(who, {"wall": [], "cpu": [], "size": []})
                stats["wall"].append(timing.wall)
                stats["cpu"].append(timing.cpu)
                stats["size"].append(size)
                print(f"  run {run + 1} {who}: {timing.wall:.1f} s wall, {timing.cpu:.1f} s CPU, "
                      f"{size / MiB:,.1f} MiB", flush=True)
    finally:
        drop(cfg, database)
        shutil.rmtree(work, ignore_errors=True)
    size_text = f"{data / MiB:,.0f} MiB of InnoDB data, a {plain / MiB:,.0f} MiB dump"
    note = f"median of {runs} alternating runs" + ("" if runs >= 3 else " (quick: fewer than 3)")
    rows = []
    pairs = [("ours", "gzip", "gzip (default)"), ("ours zstd", "gzip", "zstd option")]
    if "zstd -T0" in anchors:
        pairs.append(("ours zstd", "zstd -T0", "zstd option"))
    for mine, who, label_ours in pairs:
        o = {name: median(values) for name, values in results[mine].items()}
        a = {name: median(values) for name, values in results[who].items()}
        label = f"mysqldump | {who}"
        rows += [Row(f"4 MySQL dump wall, ours {label_ours} vs | {who}", o["wall"], a["wall"], "s", "lower",
                     size_text, label, note),
                 Row(f"4 MySQL dump CPU, ours {label_ours} vs | {who}", o["cpu"], a["cpu"], "CPU s", "lower",
                     size_text, label, note + "; ours also counts rows per table and reads the file back"),
                 Row(f"4 MySQL dump size, ours {label_ours} vs | {who}", o["size"] / MiB, a["size"] / MiB, "MiB",
                     "lower", size_text, label, note)]
    publish("mysql_dump", rows)
    print_table(rows, "figure 4: MySQL dump")
    return 0


if __name__ == "__main__":
    sys.exit(main())
