"""pg_restore for a restore (actors/postgres/load.py decides what it may load): the archive's list of entries
read, and the chosen entries loaded into the scratch database as the loading role. In tcp mode the local
pg_restore reads the archive file and connects to postgres.host:port, with `postgres.restore_jobs` in parallel;
in docker mode the container's own pg_restore reads the archive streamed to its stdin (`docker exec`, as
actors/mysql/load.py feeds its client) and connects over the container's socket, in one transaction (a pipe
cannot be read in parallel), so no local client is needed and the server's own version loads its own dump.
"""
from __future__ import annotations

from contextlib import closing
from pathlib import Path

from actors.postgres.session import CONNECT_TIMEOUT, DockerTools, LocalTools, failure, local_tools
from actors.postgres.watchdog import Watchdog
from core.child_output import clean_stderr
from core.component import PermanentError
from core.config import PostgresSettings
from core.points import Point

# pg_restore's options for an untrusted archive: nothing but the tables' definitions and rows.
LOAD_OPTIONS = ["--no-owner", "--no-privileges", "--no-comments", "--no-publications", "--no-subscriptions",
                "--no-security-labels", "--no-tablespaces", "--exit-on-error"]


def archive_list(tools: LocalTools | DockerTools, path: Path, point: Point) -> str:
    """pg_restore's `--list` of the archive (read where the load will run)."""
    if isinstance(tools, DockerTools):
        with closing(tools.fed("pg_restore", ["--list"], path)) as blocks:
            out = b"".join(blocks)
        code, err = tools.exit_code, tools.stderr
        missing, tool = code in (126, 127), f"pg_restore in {tools.where}"
        hint = (f"{tools.where} has no pg_restore: use postgres.mode: tcp with a local client (apt-get install "
                f"postgresql-client) of the server's major version or newer")
    else:
        code, out, err = tools.run("pg_restore", ["--list", str(path)], connect=False)
        missing, tool = code == 127, "pg_restore"
        hint = ("no pg_restore on PATH: install PostgreSQL's client (apt-get install postgresql-client) of the "
                "server's major version or newer")
    if missing:
        raise PermanentError(hint)
    if code != 0:
        raise PermanentError(f"{tool} cannot read {path.name} of {point.ref} ({clean_stderr(err, '')}); "
                             f"run `ragflow-backup verify` and choose another point")
    return out.decode("utf-8", "replace")


def load_entries(cfg: PostgresSettings, tools: LocalTools | DockerTools, path: Path, list_file: str, scratch: str,
         loader: str, password: str, watch: Watchdog) -> None:
    """Load the entries of `list_file` (written with tools.put_file) into `scratch` as the role `loader`; the
    watchdog stops pg_restore if the server hangs."""
    if isinstance(tools, DockerTools):
        args = [*LOAD_OPTIONS, "--single-transaction", "--use-list", list_file, "-U", loader, "-d", scratch, "-w"]
        environment = {"PGPASSWORD": password, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
        with closing(tools.fed("pg_restore", args, path, environment, cut_by=watch.on_hang)) as output:
            for _ in output:  # nothing comes: it writes into the database
                pass
        code, err, where = tools.exit_code, tools.stderr, tools.where
    else:
        with local_tools(cfg, user=loader, password=password) as as_loader:
            parallel = ["--jobs", str(cfg.restore_jobs)] if cfg.restore_jobs > 1 else ["--single-transaction"]
            args = [*LOAD_OPTIONS, *parallel, "--use-list", list_file, *as_loader.connection_args(scratch), str(path)]
            with open(as_loader.folder / "pg_restore.err", "w+b") as errors:
                proc = as_loader.start("pg_restore", args, errors)
                watch.process(proc)  # as long as the data takes, while the server answers
                code = proc.wait()
                errors.seek(0)
                err = errors.read()
            where = as_loader.where
    if code != 0:
        stderr = clean_stderr(err, password)
        if "permission denied" in stderr or "must be" in stderr:
            raise PermanentError(f"the archive asked for more than loading RAGFlow's tables ({stderr}), so "
                                 f"nothing was restored: choose another point")
        raise failure("pg_restore", code, stderr, where, cfg)
