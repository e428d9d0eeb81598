"""Which RAGFlow a point was taken from, and whether a point is newer than the RAGFlow installed now.

Recorded in every manifest (`Manifest.ragflow`): the image `.env` names (RAGFLOW_IMAGE), the image the app
container runs (found by its compose service label, with its digest) when Docker is reachable, and the schema
of RAGFlow's database. RAGFlow keeps no schema version in its database: api/db/db_models.py's migrate_db()
adds and alters columns idempotently at every start, and its system_settings table holds settings, not a
version. So the schema is recorded as its shape: tables, columns and a fingerprint of every column's name and
type. A dump taken under a newer RAGFlow carries columns an older one does not know; restoring it under the
older RAGFlow is unsupported, which `restore` checks with `newer_than`.
"""
from __future__ import annotations

import hashlib
import logging
import re
from contextlib import closing

from core import clients
from core.config import Settings
from core.manifest import RagflowVersion, SchemaShape
from core.ragflow_deployment import image_name

log = logging.getLogger("ragflow_backup.ragflow_version")

APP_SERVICES = ("ragflow-cpu", "ragflow-gpu", "ragflow")  # v0.22+ split the app service by DEVICE
PROBE_TIMEOUT = 10  # seconds a hung MySQL or Docker may hold up the point (or status, restore) asking for versions
_TAG = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def tag_version(image: str | None) -> tuple[int, int, int] | None:
    """(0, 27, 0) from 'infiniflow/ragflow:v0.27.0' or '...:v0.20.5-slim'; None for 'nightly', digests, ..."""
    if not image:
        return None
    name = image.split("@", 1)[0]
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    match = _TAG.match(tag)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def newer_than(point: RagflowVersion | None, installed: RagflowVersion | None) -> bool:
    """True when a point was taken under a newer RAGFlow than `installed`: by the image tags' versions when both
    have one, else by the schema (the point's database had more columns). Unknown either side: False."""
    if point is None or installed is None:
        return False
    theirs, ours = tag_version(point.effective_image), tag_version(installed.effective_image)
    if theirs and ours:
        return theirs > ours
    if point.schema_shape and installed.schema_shape:
        return (point.schema_shape.fingerprint != installed.schema_shape.fingerprint
                and point.schema_shape.columns > installed.schema_shape.columns)
    return False


def schema_shape(settings: Settings) -> SchemaShape | None:
    """The shape of RAGFlow's database now, or None when it cannot be reached from here."""
    if not settings.mysql.enabled:
        return None
    try:  # a hung server must not hold up the backup that asks: PyMySQL waits forever without read_timeout
        with closing(clients.mysql_connection(settings.mysql, database="", read_timeout=PROBE_TIMEOUT,
                                              write_timeout=PROBE_TIMEOUT)) as conn, conn.cursor() as cur:
            cur.execute("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, COLUMN_NAME", (settings.mysql.database,))
            rows = cur.fetchall()
    except Exception as exc:  # noqa: BLE001 - a version we cannot read is recorded as unknown
        log.info("schema of %s not read: %s", settings.mysql.database, type(exc).__name__)
        return None
    if not rows:
        return None
    lines = "\n".join(f"{table}.{column} {kind}" for table, column, kind in rows)
    return SchemaShape(tables=len({row[0] for row in rows}), columns=len(rows),
                       fingerprint=hashlib.sha256(lines.encode()).hexdigest()[:16])


def running_image(settings: Settings) -> tuple[str | None, str | None]:
    """(image, digest) of RAGFlow's app container, found by its compose service label; (None, None) when
    Docker is not reachable or no such container runs."""
    labels = ["com.docker.compose.service"]
    if settings.mysql.compose_project:
        labels.append(f"com.docker.compose.project={settings.mysql.compose_project}")
    try:
        running = clients.docker_client(settings.docker.host, PROBE_TIMEOUT).containers.list(filters={"label": labels})
        by_service = {c.labels.get("com.docker.compose.service"): c for c in running}
        container = next((by_service[name] for name in APP_SERVICES if name in by_service), None)
        if container is not None:
            image = container.attrs.get("Config", {}).get("Image") or next(iter(container.image.tags), None)
            digests = container.image.attrs.get("RepoDigests") or []
            return image, digests[0].partition("@")[2] if digests else container.image.id
    except Exception as exc:  # noqa: BLE001 - no Docker here: the .env's image is what we know
        log.info("RAGFlow's container not inspected: %s", type(exc).__name__)
    return None, None


def detect(settings: Settings) -> RagflowVersion:
    """The RAGFlow installed now, as far as it can be seen from here."""
    image, digest = running_image(settings)
    env_image = image_name(settings.ragflow_env().get("RAGFLOW_IMAGE"))
    return RagflowVersion(image=env_image, running_image=image, running_digest=digest,
                          schema_shape=schema_shape(settings))


def describe(version: RagflowVersion | None) -> str:
    """One line for list, status and restore."""
    if version is None:
        return "not recorded"
    parts = [version.effective_image or "image unknown"]
    if version.running_digest:
        parts.append(f"digest {version.running_digest[:19]}")
    if version.running_image and version.image and version.running_image != version.image:
        parts.append(f".env names {version.image}")
    if version.schema_shape:
        parts.append(f"schema {version.schema_shape.tables} tables/{version.schema_shape.columns} columns "
                     f"#{version.schema_shape.fingerprint}")
    return ", ".join(parts)
