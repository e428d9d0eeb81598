"""Elasticsearch / OpenSearch: a snapshot of RAGFlow's indices into a shared fs repository.

The repository serves every point (snapshots are incremental: unchanged segments are stored once);
each point keeps `search_snapshot.json` naming its snapshot and the documents each index held, which
is what a restore must find again. Both engines speak the same snapshot REST API, but their Python
clients spell some calls differently: those differences live in `SnapshotRepo` and nowhere else.

Retention happens in the repository after a good snapshot: the newest `keep_snapshots` good ones
stay, and so does every snapshot a point still on disk names or an interval record names (interval.py).
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core import clients
from core.atomic import atomic_file
from core.checks import verify_artifacts
from core.clients import compose_override
from core.component import ComponentResult, PermanentError
from core.config import SearchSettings, Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point, Storage

NAME = "search"
ARTIFACT = "search_snapshot.json"
FORMAT = 1
POLL_SECONDS = 1.0
DONE_STATES = {"SUCCESS", "PARTIAL", "FAILED", "INCOMPATIBLE"}


class RepositoryMissing(LookupError):
    """The snapshot repository is not registered on the server."""


def response_body(response: Any) -> Any:
    """The JSON body of a response from either client (ES wraps it, opensearch-py does not)."""
    return response.body if hasattr(response, "body") else response


def http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)  # ES ApiError and opensearch-py TransportError
    return status if isinstance(status, int) else None


def _reasons(exc: BaseException) -> str:
    """The server's reasons for an error response, outermost first, without repeats."""
    body = getattr(exc, "body", None)
    if not isinstance(body, dict):
        body = getattr(exc, "info", None)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return str(exc)
    found: list[str] = []
    stack = [error]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if item.get("reason") and item["reason"] not in found:
                found.append(str(item["reason"]))
            stack += [item.get("caused_by"), *(item.get("root_cause") or [])]
    return "; ".join(found) or str(exc)


def public_url(search: SearchSettings) -> str:
    """The server URL without any credentials someone wrote into it."""
    parts = urlsplit(search.url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _where(search: SearchSettings) -> str:
    return f"{search.engine} at {public_url(search)}"


@contextmanager
def classified(search: SearchSettings) -> Iterator[None]:
    """Turn what retrying cannot fix (credentials, privileges, wrong engine) into PermanentError."""
    try:
        yield
    except PermanentError:
        raise
    except Exception as exc:
        status = http_status(exc)
        password_var = "ELASTIC_PASSWORD" if search.engine == "elasticsearch" else "OPENSEARCH_PASSWORD"
        if status == 401:
            raise PermanentError(
                f"authentication failed for user '{search.user}' on {_where(search)}: set search.user and "
                f"search.password in the config, or {password_var} in RAGFlow's docker/.env"
            ) from exc
        if status == 403:
            raise PermanentError(
                f"user '{search.user}' may not take snapshots on {_where(search)} ({_reasons(exc)}): give it "
                f"the cluster privilege 'manage' (or 'create_snapshot' and 'monitor') and read access to the indices"
            ) from exc
        if type(exc).__name__ == "UnsupportedProductError":  # the ES client refuses an OpenSearch server
            raise PermanentError(
                f"the server at {public_url(search)} is not Elasticsearch; if it is OpenSearch set search.engine: opensearch"
            ) from exc
        if status is not None and status >= 500:
            # Transient (retried): e.g. a node that lost its cluster after a hang says 503 for a while.
            raise RuntimeError(f"{_where(search)} answered {status} ({_reasons(exc) or exc}); will retry") from exc
        if status is None and type(exc).__name__ in ("ConnectionError", "ConnectionTimeout"):
            # Transient (retried), but say which server is away (refused, or hung: a timeout).
            raise ConnectionError(f"cannot reach {_where(search)} ({type(exc).__name__}: {exc})") from exc
        raise


class SnapshotRepo:
    """One snapshot repository on one server; the engines' client differences are kept here."""

    def __init__(self, client: Any, engine: str, name: str):
        self.client = client
        self.engine = engine
        self.name = name
        self.es = engine == "elasticsearch"

    def location(self) -> str | None:
        """The registered fs location, or None when no repository of this name exists."""
        api = self.client.snapshot
        try:
            body = response_body(api.get_repository(name=self.name) if self.es else api.get_repository(repository=self.name))
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            raise
        entry = body.get(self.name) or {}
        if entry.get("type") != "fs":
            raise PermanentError(f"snapshot repository '{self.name}' is of type {entry.get('type')!r}, not 'fs': "
                                 f"choose another search.repository name")
        return str(entry.get("settings", {}).get("location", ""))

    def register(self, location: str) -> None:
        spec = {"type": "fs", "settings": {"location": location}}
        if self.es:
            self.client.snapshot.create_repository(name=self.name, repository=spec)
        else:
            self.client.snapshot.create_repository(repository=self.name, body=spec)

    def start(self, snapshot: str, indices: list[str]) -> None:
        """Start a snapshot of exactly these indices, without waiting for it (we poll with a bound)."""
        if self.es:
            self.client.snapshot.create(repository=self.name, snapshot=snapshot, indices=indices,
                                        include_global_state=False, wait_for_completion=False)
        else:
            body = {"indices": ",".join(indices), "include_global_state": False}
            self.client.snapshot.create(repository=self.name, snapshot=snapshot, body=body, wait_for_completion=False)

    def snapshots(self, pattern: str = "_all") -> list[dict[str, Any]]:
        """Snapshot infos matching `pattern`; raises RepositoryMissing when the repository is gone."""
        try:
            body = response_body(self.client.snapshot.get(repository=self.name, snapshot=pattern))
        except Exception as exc:
            if http_status(exc) == 404 and "repository_missing" in str(exc):
                raise RepositoryMissing(self.name) from None
            if http_status(exc) == 404:  # no snapshot of that name
                return []
            raise
        if body.get("failures"):  # ES 8 reports a missing repository here instead of a 404
            raise RepositoryMissing(self.name)
        return list(body.get("snapshots") or [])

    def info(self, snapshot: str) -> dict[str, Any] | None:
        found = [s for s in self.snapshots(snapshot) if s.get("snapshot") == snapshot]
        return found[0] if found else None

    def delete(self, snapshot: str) -> None:
        self.client.snapshot.delete(repository=self.name, snapshot=snapshot)

    def unregister(self) -> None:
        """Forget the repository (its files stay on disk); for scratch repositories of drills and tests."""
        if self.es:
            self.client.snapshot.delete_repository(name=self.name)
        else:
            self.client.snapshot.delete_repository(repository=self.name)


def _repo(search: SearchSettings, client: Any = None, name: str | None = None) -> SnapshotRepo:
    return SnapshotRepo(client or clients.search_client(search), search.engine, name or search.repository)


# ---------------------------------------------------------------- repository and indices


def ensure_repository(search: SearchSettings, repo: SnapshotRepo, log: logging.Logger) -> None:
    """Register the fs repository at search.repository_path, or confirm it is already there."""
    wanted = search.repository_path
    current = repo.location()
    if current is not None:
        if os.path.normpath(current) != os.path.normpath(wanted):
            raise PermanentError(
                f"snapshot repository '{repo.name}' on {_where(search)} is registered at {current}, but "
                f"search.repository_path is {wanted}: set search.repository_path to {current}, or choose another "
                f"search.repository name"
            )
        return
    try:
        repo.register(wanted)
    except Exception as exc:
        reasons = _reasons(exc)
        if "path.repo" in reasons:
            message = (f"cannot register snapshot repository '{repo.name}' at {wanted} on {_where(search)}: "
                       f"{reasons}. The location must be inside the server's path.repo; "
                       f"{compose_override(search.engine)}")
            log.error("%s", message)  # the log keeps the override's lines intact
            raise PermanentError(message) from exc
        if http_status(exc) == 500 and "repository" in reasons:  # e.g. the folder is not writable by the server
            raise PermanentError(f"cannot register snapshot repository '{repo.name}' at {wanted} on "
                                 f"{_where(search)}: {reasons}") from exc
        raise
    log.info("registered snapshot repository %s at %s", repo.name, wanted)


def index_doc_counts(client: Any, patterns: list[str]) -> dict[str, int]:
    """The open indices matching `patterns`, each with its primaries' document count after a refresh."""
    expression = ",".join(patterns)
    options = {"expand_wildcards": "open", "allow_no_indices": True, "ignore_unavailable": True}
    names = sorted(response_body(client.indices.get_settings(index=expression, name="index.uuid", **options)))
    if not names:
        return {}
    client.indices.refresh(index=expression, **options)
    # All open indices' stats, then ours: hundreds of tenants' index names would overflow the URL.
    per_index = response_body(client.indices.stats(metric="docs", expand_wildcards="open")).get("indices", {})
    gone = [name for name in names if name not in per_index]
    if gone:
        raise RuntimeError(f"indices {', '.join(gone)} disappeared (or were closed) while being counted")
    return {name: int(per_index[name]["primaries"]["docs"]["count"]) for name in names}


def index_aliases(client: Any, patterns: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """The aliases of each of `names` (matched by `patterns`), for those that have any: {index: {alias: spec}}.

    A restore replaces an index by a clone of its staged copy, and neither a renamed restore nor a clone
    carries aliases, so the record keeps them for the restore to put back.
    """
    options = {"expand_wildcards": "open", "allow_no_indices": True, "ignore_unavailable": True}
    body = response_body(client.indices.get_alias(index=",".join(patterns), **options))
    return {name: dict(body[name]["aliases"]) for name in names if (body.get(name) or {}).get("aliases")}


# ---------------------------------------------------------------- snapshots


def snapshot_name(search: SearchSettings, at: datetime | None = None) -> str:
    at = at or datetime.now(timezone.utc)
    return f"{search.snapshot_prefix}{at.strftime('%Y%m%dt%H%M%Sz')}".lower()  # names must be lowercase


def _free_name(search: SearchSettings, repo: SnapshotRepo) -> str:
    """A new snapshot name; two backups within one second wait for the next one."""
    for _ in range(5):
        name = snapshot_name(search)
        if repo.info(name) is None:
            return name
        time.sleep(1.0)
    raise RuntimeError(f"snapshot name {name} is already taken in repository {repo.name}")


def wait_for_snapshot(repo: SnapshotRepo, name: str, timeout: float) -> dict[str, Any]:
    """Poll until the snapshot is done; on timeout raise (transient), leaving it to finish on the server."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        info = repo.info(name)
        if info is None:
            raise RuntimeError(f"snapshot {name} vanished from repository {repo.name} while it was being taken")
        if info.get("state") in DONE_STATES:
            return info
        if time.monotonic() + delay > deadline:
            raise TimeoutError(
                f"snapshot {name} in repository {repo.name} is still {info.get('state')} after {timeout:.0f}s; "
                f"it goes on on the server (raise search.snapshot_timeout_seconds for large indices)"
            )
        time.sleep(delay)
        delay = min(POLL_SECONDS, delay * 2)


def _judge(info: dict[str, Any], repo: SnapshotRepo) -> None:
    """Only SUCCESS is good: a PARTIAL snapshot misses shards and must never pass for a backup."""
    state = info.get("state")
    if state == "SUCCESS":
        return
    failures = "; ".join(
        f"{f.get('index')}[{f.get('shard_id')}]: {f.get('reason')}" for f in info.get("failures") or []
    ) or info.get("reason") or "no reason given"
    message = f"snapshot {info.get('snapshot')} in repository {repo.name} ended {state}: {failures}"
    if state == "PARTIAL":
        # Some shards were not copied (often a shard moving or unavailable): another try may succeed.
        raise RuntimeError(message + " (a partial snapshot is not a backup; it will be pruned)")
    raise PermanentError(message)


def snapshot_exists(settings: Settings | SearchSettings, name: str) -> str | None:
    """The state of snapshot `name` in the configured repository, or None when it (or the repository) is gone."""
    search = settings.search if isinstance(settings, Settings) else settings
    try:
        info = _repo(search).info(name)
    except RepositoryMissing:
        return None
    return info.get("state") if info else None


def referenced_snapshots(storage: Storage) -> set[str]:
    """Snapshot names that points on disk (any tier) depend on; an unreadable record raises."""
    names = set()
    for point in storage.points():
        path = point.folder / ARTIFACT
        if not path.is_file():
            continue
        try:
            name = json.loads(path.read_text()).get("snapshot")
        except (OSError, ValueError, AttributeError) as exc:
            raise RuntimeError(f"cannot read {path} ({exc}); its snapshot is unknown, so none is pruned") from None
        if name:
            names.add(name)
    return names


def recorded_interval_snapshots(storage: Storage) -> set[str]:
    """Interval snapshots whose record is still under the storage root (actors/search/interval.py): kept."""
    folder = storage.layout.search_intervals
    if not folder.is_dir():
        return set()
    return {entry.name for entry in folder.iterdir() if (entry / ARTIFACT).is_file()}


def prune_snapshots(settings: Settings | SearchSettings, keep: int, protected: set[str], client: Any = None,
                    log: logging.Logger | None = None) -> list[str]:
    """Delete our old snapshots; return the names deleted.

    Among snapshots with our prefix, keep the newest `keep` SUCCESS ones, every name in `protected`, the
    newest SUCCESS one whatever `keep` says, and anything still running; delete the rest, including
    failed and partial ones older than the newest good one.
    """
    search = settings.search if isinstance(settings, Settings) else settings
    repo = _repo(search, client)
    prefix = search.snapshot_prefix.lower()
    ours = sorted((s for s in repo.snapshots(f"{prefix}*") if str(s.get("snapshot", "")).startswith(prefix)),
                  key=lambda s: (s.get("start_time_in_millis") or 0, s["snapshot"]))
    good = [s for s in ours if s.get("state") == "SUCCESS"]
    if not good:
        return []
    newest_good = good[-1]
    kept = {s["snapshot"] for s in good[-max(keep, 1):]} | set(protected) | {newest_good["snapshot"]}
    newest_good_at = ours.index(newest_good)
    deleted = []
    for position, info in enumerate(ours):
        name = info["snapshot"]
        if name in kept or info.get("state") not in DONE_STATES:
            continue
        if position > newest_good_at:
            continue  # a failure newer than our newest good snapshot: left for someone to look at
        repo.delete(name)
        deleted.append(name)
        if log:
            log.info("deleted snapshot %s from repository %s (retention: keep %d)", name, repo.name, keep)
    return deleted


# ---------------------------------------------------------------- the component


def _check_json(path: Path) -> None:
    json.loads(path.read_bytes())


def _write_record(point: Point, document: dict[str, Any]) -> Artifact:
    data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    with atomic_file(point.path(ARTIFACT), check=_check_json) as out:
        out.write(data)
    written = out.result  # type: ignore[attr-defined]
    return Artifact(name=ARTIFACT, bytes=written.bytes, sha256=written.sha256, kind="json")


def backup(settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
    search = settings.search
    with classified(search):
        client = clients.search_client(search)
        version = clients.search_server_version(client)
        repo = _repo(search, client)
        ensure_repository(search, repo, log)
        counts = index_doc_counts(client, search.indices)
        document: dict[str, Any] = {
            "format": FORMAT, "engine": search.engine, "server_version": version, "url": public_url(search),
            "repository": {"name": repo.name, "type": "fs", "location": search.repository_path},
            "patterns": search.indices, "doc_counts": counts, "indices": sorted(counts), "snapshot": None,
        }
        details: dict[str, Any] = {"engine": search.engine, "server_version": version, "repository": repo.name,
                                   "repository_path": search.repository_path, "snapshot": None, "state": None,
                                   "indices": len(counts), "deleted_snapshots": []}
        if not counts:
            # An empty RAGFlow has no index yet: that is a sound (if empty) backup, not a failure.
            details["note"] = f"no open index matches {', '.join(search.indices)}; no snapshot taken"
            log.info("%s", details["note"])
            return ComponentResult(artifacts=[_write_record(point, document)], counts={}, details=details)

        document["aliases"] = index_aliases(client, search.indices, sorted(counts))
        name = _free_name(search, repo)
        log.info("snapshot %s of %d indices into repository %s started", name, len(counts), repo.name)
        repo.start(name, sorted(counts))
        info = wait_for_snapshot(repo, name, search.snapshot_timeout_seconds)
        _judge(info, repo)
        missing = sorted(set(counts) - set(info.get("indices") or []))
        if missing:
            raise RuntimeError(f"snapshot {name} lacks indices {', '.join(missing)} that were counted")
        document.update({
            "snapshot": name, "uuid": info.get("uuid"), "state": info.get("state"),
            "start_time": info.get("start_time"), "end_time": info.get("end_time"),
            "duration_in_millis": info.get("duration_in_millis"), "indices": sorted(info.get("indices") or []),
            "shards": info.get("shards"), "include_global_state": False,
        })
        artifact = _write_record(point, document)
        details.update({"snapshot": name, "state": info.get("state"), "uuid": info.get("uuid")})
        log.info("snapshot %s: %s, %s shards", name, info.get("state"), info.get("shards"))

        # Retention trouble must not fail a good backup: it is logged and tried again next time.
        try:
            protected = referenced_snapshots(point.storage) | recorded_interval_snapshots(point.storage) | {name}
            details["deleted_snapshots"] = prune_snapshots(search, search.keep_snapshots, protected, client, log)
        except Exception as exc:  # noqa: BLE001
            log.warning("snapshot retention skipped: %s", exc)
            details["retention_error"] = str(exc)
    return ComponentResult(artifacts=[artifact], counts=counts, details=details)


def verify(settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
    problems = verify_artifacts(point, record)
    name = record.details.get("snapshot")
    if record.status != "ok" or not name:
        return problems
    search = settings.search
    repo_name = record.details.get("repository") or search.repository
    where = f"repository {repo_name} on {_where(search)}"
    try:
        with classified(search):
            info = _repo(search, name=repo_name).info(name)
    except RepositoryMissing:
        return problems + [f"snapshot {name} cannot be found: {where} is not registered"]
    except Exception as exc:  # noqa: BLE001 - an unanswered question is reported, not hidden
        return problems + [f"could not ask {where} about snapshot {name}: {type(exc).__name__}: {exc}"]
    if info is None:
        return problems + [f"snapshot {name} is missing from {where}"]
    if info.get("state") != "SUCCESS":
        problems.append(f"snapshot {name} in {where} is {info.get('state')}, not SUCCESS")
    if record.details.get("uuid") and info.get("uuid") != record.details["uuid"]:
        problems.append(f"snapshot {name} in {where} is another snapshot of the same name (uuid {info.get('uuid')}, "
                        f"recorded {record.details['uuid']}): this point's snapshot was deleted")
    absent = sorted(set(record.counts) - set(info.get("indices") or []))
    if absent:
        problems.append(f"snapshot {name} lacks {len(absent)} indices the backup counted: {', '.join(absent)}")
    return problems


def snapshot_record(point: Point) -> dict[str, Any] | None:
    """The point's search_snapshot.json, or None when it has none (for restore and listings)."""
    path: Path = point.folder / ARTIFACT
    return json.loads(path.read_text()) if path.is_file() else None

