"""Binlog replay (issue 15): our replay of an archived binlog into a scratch database (actors/mysql/replay.py:
the server's own decoder, every BINLOG statement checked, the temporary account) against the plain
`mariadb-binlog ... | mariadb` pipeline on the same files into another scratch database; wall time, ratio.

    python bench/binlog_replay.py [--quick] [--runs N] [--rows N]

The rows are written into a database of the bench's own on the test bed's MariaDB (ROW format): inserts in
batches of 1,000, then updates of every row in batches of 1,000 (the plain pipeline fails on one UPDATE of
every row: its BINLOG statement passes the server's 16 MiB max_allowed_packet; ours splits it); the binlog is copied byte-exact from before the writes
(`mariadb-binlog --read-from-remote-server --raw`). Everything is dropped afterwards.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.mysql.replay import replay  # noqa: E402
from actors.mysql.sandbox import client_host, load_account  # noqa: E402
from bench.common import Row, median, print_table, publish, timed  # noqa: E402
from core import clients  # noqa: E402
from core.config import Settings  # noqa: E402
from core.pitr import BinlogCoordinates, ReplayPlan  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed import settings as testbed_settings  # noqa: E402

TABLE = "CREATE TABLE `{}`.doc (id INT PRIMARY KEY, kb CHAR(32), body VARCHAR(400), updated BIGINT)"


def option_file(cfg, folder: Path) -> Path:
    path = folder / "client.cnf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"[client]\nuser={cfg.user}\npassword=\"{clients.secret(cfg.password)}\"\nhost={cfg.host}\n"
                     f"port={cfg.port}\nprotocol=TCP\n")
    return path


def write_rows(cfg, database: str, rows: int) -> BinlogCoordinates:
    with contextlib.closing(clients.mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(TABLE.format(database))
        cur.execute("SHOW MASTER STATUS")
        file, position = cur.fetchone()[:2]
        for start in range(0, rows, 1000):
            values = [(n, uuid.uuid4().hex, os.urandom(150).hex(), n) for n in range(start, min(rows, start + 1000))]
            cur.executemany(f"INSERT INTO `{database}`.doc VALUES (%s, %s, %s, %s)", values)
            conn.commit()
        for start in range(0, rows, 1000):  # in batches: one UPDATE of every row would pass the anchor's 16 MiB packet
            cur.execute(f"UPDATE `{database}`.doc SET updated = updated + 1 WHERE id >= %s AND id < %s",
                        (start, start + 1000))
            conn.commit()
    return BinlogCoordinates(file, int(position))


def copy_binlog(cfg, start: BinlogCoordinates, folder: Path, options: Path) -> tuple[Path, ...]:
    with contextlib.closing(clients.mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        names = [row[0] for row in cur.fetchall()]
    wanted = names[names.index(start.file):]
    subprocess.run(["mariadb-binlog", f"--defaults-extra-file={options}", "--read-from-remote-server", "--raw",
                    f"--result-file={folder}/", *wanted], check=True, capture_output=True)
    return tuple(folder / name for name in wanted)


def fresh(cfg, database: str) -> None:
    with contextlib.closing(clients.mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(TABLE.format(database))


def ours(settings: Settings, plan: ReplayPlan, scratch: str) -> None:
    with contextlib.closing(clients.mysql_connection(settings.mysql, "")) as conn:
        with load_account(conn, scratch, client_host(conn)) as account:
            replay(settings, conn, plan, scratch, account)


def anchor(plan: ReplayPlan, scratch: str, options: Path) -> None:
    files = " ".join(str(path) for path in plan.files)
    pipeline = (f"set -o pipefail; TZ=UTC mariadb-binlog --start-position={plan.start.position} "
                f"--database={plan.database} --rewrite-db='{plan.database}->{scratch}' {files} | "
                f"mariadb --defaults-extra-file={options} --binary-mode")
    done = subprocess.run(["bash", "-c", pipeline], stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"the anchor pipeline failed: {done.stderr.decode()[-500:]}")


def count(cfg, database: str) -> tuple:
    with contextlib.closing(clients.mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), SUM(updated) FROM `{database}`.doc")
        return tuple(cur.fetchone())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    runs, rows = args.runs or (1 if args.quick else 3), args.rows or (20_000 if args.quick else 200_000)
    cfg = testbed_settings.mysql(testbed_env.load())
    source = f"bench_{uuid.uuid4().hex[:10]}"
    targets = (f"{source}__ours", f"{source}__anchor")
    work = Path(tempfile.mkdtemp(prefix="bench-binlog-replay-"))
    try:
        options = option_file(cfg, work)
        start = write_rows(cfg, source, rows)
        files = copy_binlog(cfg, start, work, options)
        size = sum(path.stat().st_size for path in files) - start.position  # from the coordinates on
        plan = ReplayPlan(files, start, datetime.now(timezone.utc), source)
        settings = Settings(storage_root=work / "root", mysql=cfg)
        times: dict[str, list[float]] = {"ours": [], "anchor": []}
        for _ in range(runs):  # alternating, each into a fresh copy of the table
            for name, target in zip(times, targets):
                fresh(cfg, target)
                with timed() as timing:
                    ours(settings, plan, target) if name == "ours" else anchor(plan, target, options)
                times[name].append(timing.wall)
                if count(cfg, target) != count(cfg, source):
                    raise RuntimeError(f"{name} replayed {count(cfg, target)} rows, the source has {count(cfg, source)}")
        row = Row(figure="10 binlog replay into the scratch database", ours=median(times["ours"]),
                  anchor=median(times["anchor"]), unit="s", better="lower",
                  size=f"{rows:,} rows inserted then updated, {size / 2 ** 20:.1f} MiB of binlog from the coordinates "
                       f"(the test bed's: other databases' events in it are skipped by both)",
                  anchor_name="mariadb-binlog | mariadb",
                  note=f"median of {runs}; {rows * 2 / median(times['ours']):,.0f} row changes/s ours")
        publish("binlog_replay", [row])
        print_table([row])
    finally:
        with contextlib.closing(clients.mysql_connection(cfg, "")) as conn, conn.cursor() as cur:
            for database in (source, *targets):
                cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
