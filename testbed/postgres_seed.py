"""RAGFlow's tables in PostgreSQL, seeded like testbed/seed.py seeds MySQL (the same plan, the same rows).

RAGFlow's models (api/db/db_models.py) are the same tables on either engine; peewee maps MySQL's types to
PostgreSQL's as `pg_type` below does. Used by the PostgreSQL tests, the benchmark and `python -m
testbed.postgres_seed`.
"""
from __future__ import annotations

import argparse
import re
import sys
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql

from testbed import env as testbed_env
from testbed.seed import INDEXED, PRIMARY_KEYS, SHARED, SIZES, TABLES, SeedSize, make_plan, table_columns

_SAFE_DB = re.compile(r"[a-z0-9_]{1,63}")
_TYPES = {"int": "integer", "bigint": "bigint", "datetime": "timestamp", "float": "double precision",
          "text": "text", "longtext": "text", "tinyint(1)": "smallint"}


@dataclass
class PgDataset:
    database: str
    tenant_ids: list[str]
    kb_ids: list[str]
    doc_ids: list[str]
    row_counts: dict[str, int]


def pg_type(mysql_type: str) -> str:
    return mysql_type if mysql_type.startswith("varchar") else _TYPES[mysql_type]


def connect(env: dict[str, str] | None = None, database: str | None = None, port_key: str = "PG_PORT",
            **kwargs) -> psycopg.Connection:
    env = env or testbed_env.load()
    return psycopg.connect(host=env["PG_HOST"], port=int(env[port_key]), user=env["PG_USER"],
                           password=env["PG_PASSWORD"], dbname=database or env["PG_DATABASE"], autocommit=True,
                           connect_timeout=10, **kwargs)


def create_tables(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        for table in TABLES:
            parts = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type(kind)))
                     for name, kind in table_columns(table)]
            keys = [sql.Identifier(k.strip()) for k in PRIMARY_KEYS.get(table, "id").split(",")]
            parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(keys)))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(sql.Identifier(table),
                                                                            sql.SQL(", ").join(parts)))
            for column in INDEXED.get(table, []):
                cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(f"{table}_{column}"), sql.Identifier(table), sql.Identifier(column)))


def seed_postgres(env: dict[str, str] | None = None, database: str | None = None, size: str | SeedSize = "tiny",
                  seed: int = 0, port_key: str = "PG_PORT") -> PgDataset:
    """Create `database` (default: a new uuid-named one) with RAGFlow's tables and the plan's rows, in one
    transaction."""
    database = database or f"rbtest_{uuid.uuid4().hex[:12]}"
    if not _SAFE_DB.fullmatch(database):
        raise ValueError(f"unsafe database name {database!r}")
    plan = make_plan(SIZES[size] if isinstance(size, str) else size, seed)
    with connect(env, "postgres", port_key) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    counts: dict[str, int] = {}
    with connect(env, database, port_key) as conn:
        create_tables(conn)
        with conn.transaction(), conn.cursor() as cur:
            for table, rows in plan.rows.items():
                names = [name for name, _ in table_columns(table)]
                statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}){}").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)),
                    sql.SQL(", ").join(sql.Placeholder() * len(names)),
                    sql.SQL(" ON CONFLICT DO NOTHING") if table in SHARED else sql.SQL(""))
                cur.executemany(statement, [tuple(row.get(name) for name in names) for row in rows])
                counts[table] = len(rows)
    return PgDataset(database, plan.ids("tenant"), plan.ids("knowledgebase"), plan.ids("document"), counts)


def drop_database(database: str, env: dict[str, str] | None = None, port_key: str = "PG_PORT") -> None:
    if not _SAFE_DB.fullmatch(database):
        raise ValueError(f"unsafe database name {database!r}")
    with connect(env, "postgres", port_key) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed RAGFlow-shaped tables into the test bed's PostgreSQL.")
    parser.add_argument("--database", default=None, help="default: the test bed's PG_DATABASE")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = testbed_env.load()
    ds = seed_postgres(env, args.database or env["PG_DATABASE"], args.size, args.seed)
    print(f"seeded {ds.database}: {sum(ds.row_counts.values())} rows in {len(ds.row_counts)} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
