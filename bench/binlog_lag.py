"""Figure 8: the binlog archive's lag, from a commit on the server to its bytes fsynced in the archive (the index,
written after the fsync, names them), under a steady write load, with the default settings (binlog.poll_seconds
0.5). Goal (issue 15): p99 under 5 s.

A private MariaDB with its binary log on (ROW) takes one small transaction every 1/rate seconds; after each
commit its binlog position is read (SHOW MASTER STATUS), and a watcher reading the archive's index every 20 ms
notes when that position is in the archive. The archiver runs in this process, as the agent runs it.

    python bench/binlog_lag.py [--quick] [--seconds 60] [--rate 20]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.binlog.archiver import Archiver  # noqa: E402
from actors.binlog.index import load_index  # noqa: E402
from bench.common import Row, percentile, print_table, publish  # noqa: E402
from core.config import Settings  # noqa: E402
from testbed.private_servers import PrivateMariadb, wait_until  # noqa: E402

GOAL_SECONDS = 5.0


def measure(seconds: float, rate: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="ragflow-backup-bench-binlog-") as work:
        server = PrivateMariadb(Path(work) / "mariadb", log_bin=True)
        server.start()
        try:
            (Path(work) / "root").mkdir()
            settings = Settings(storage_root=Path(work) / "root", minio={"enabled": False},
                                search={"enabled": False}, redis={"enabled": False},
                                mysql={"host": "127.0.0.1", "port": server.port, "user": "root",
                                       "password": server.password})
            with server.connection() as conn, conn.cursor() as cursor:
                cursor.execute("CREATE DATABASE bench")
                cursor.execute("CREATE TABLE bench.t (id INT PRIMARY KEY, v VARCHAR(200))")
            archiver, stop = Archiver(settings), threading.Event()
            runner = threading.Thread(target=archiver.run, args=(stop,), daemon=True)
            runner.start()
            wait_until(lambda: archiver.state.connected, "the archive to stream", 60)
            pending: list[tuple[float, str, int]] = []  # (commit time, file, position)
            lags: list[float] = []
            lock, writing = threading.Lock(), threading.Event()
            writing.set()

            def watch() -> None:
                while writing.is_set() or pending:
                    index = load_index(settings.layout)
                    seen = time.monotonic()
                    with lock:
                        for item in list(pending):
                            entry = index.file(item[1])
                            if entry is not None and entry.size >= item[2]:
                                lags.append(seen - item[0])
                                pending.remove(item)
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            with server.connection() as conn, conn.cursor() as cursor:
                began, n = time.monotonic(), 0
                while time.monotonic() - began < seconds:
                    cursor.execute("INSERT INTO bench.t VALUES (%s, REPEAT('x', 150))", (n,))
                    committed = time.monotonic()  # autocommit: the row is committed when execute returns
                    cursor.execute("SHOW MASTER STATUS")
                    name, position = cursor.fetchone()[:2]
                    with lock:
                        pending.append((committed, name, int(position)))
                    n += 1
                    time.sleep(max(0.0, began + n / rate - time.monotonic()))
            writing.clear()
            watcher.join(120)
            stop.set()
            runner.join(60)
            if pending:
                raise RuntimeError(f"{len(pending)} commits never reached the archive")
            return lags
        finally:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rate", type=float, default=20.0, help="commits per second")
    args = parser.parse_args()
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    lags = measure(seconds, args.rate)
    size = f"{len(lags)} commits, {args.rate:g}/s for {seconds:g} s"
    rows = [Row("8 binlog archive lag p50 (commit -> fsynced)", percentile(lags, 0.5), GOAL_SECONDS, "s", "lower",
                size, anchor_name="goal p99 5 s", note="binlog.poll_seconds 0.5 (default)"),
            Row("8 binlog archive lag p99 (commit -> fsynced)", percentile(lags, 0.99), GOAL_SECONDS, "s", "lower",
                size, anchor_name="goal p99 5 s", note=f"max {max(lags):.2f} s")]
    publish("binlog_lag", rows)
    print_table(rows, "figure 8: binlog archive lag")
    return 0


if __name__ == "__main__":
    sys.exit(main())
