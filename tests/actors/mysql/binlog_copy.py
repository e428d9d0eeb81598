"""The test bed server's binary log as the archive would hold it: its coordinates now, and a one-shot byte-exact
copy (`mariadb-binlog --read-from-remote-server --raw`) of the files from given coordinates on, into a folder of
the test's own. The password goes in a 0600 option file, never argv."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from core import clients
from core.config import MySQLSettings
from core.pitr import BinlogCoordinates


def coordinates(cfg: MySQLSettings) -> BinlogCoordinates:
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        file, position = cur.fetchone()[:2]
    return BinlogCoordinates(file, int(position))


def copy_binlog(cfg: MySQLSettings, start: BinlogCoordinates, folder: Path) -> tuple[Path, ...]:
    """Byte-exact copies of `start.file` and every later file the server has now, in server order."""
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        names = [row[0] for row in cur.fetchall()]
    wanted = names[names.index(start.file):]
    folder.mkdir(parents=True, exist_ok=True)
    options = folder / "client.cnf"
    fd = os.open(options, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"[client]\nuser={cfg.user}\npassword={clients.secret(cfg.password)}\nhost={cfg.host}\n"
                     f"port={cfg.port}\nprotocol=TCP\n")
    try:
        subprocess.run(["mariadb-binlog", f"--defaults-extra-file={options}", "--read-from-remote-server", "--raw",
                        f"--result-file={folder}/", *wanted], check=True, capture_output=True, timeout=600)
    finally:
        options.unlink()
    return tuple(folder / name for name in wanted)


def remove_binlog_copies(folder: Path) -> None:
    """Delete the copies under `folder`: each is a whole file of the shared server's log (hundreds of MB), and
    the test bed's disk is shared with Elasticsearch, which stops restoring shards near its disk watermark."""
    for path in folder.rglob("binlog.[0-9]*"):
        if path.is_file():
            path.unlink()
