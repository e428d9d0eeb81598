"""Elasticsearch / OpenSearch restore from a point's snapshot: whole indices, renamed copies (drills), one KB.

Nothing live is touched before the data is staged and checked. A live restore first restores the chosen
indices under temporary names (`restore_<hex6>_<index>`), compares their document counts with the point's
record, and only then replaces each live index; a renamed restore (a drill) creates new indices only; a
knowledge-base restore stages the tenant indices the same way and copies back just that KB's chunks.

A restored index has every setting, mapping and alias of the one backed up: the snapshot restore is given no
index_settings / ignore_index_settings, so settings and mappings come back as the snapshot holds them; the
clone that puts a staged copy under the live name is given all of the copy's settings (the clone API alone
sets one replica, which turns a single node yellow); aliases, which neither carries, are put back from the
point's record. A drill's copies get no alias: it would send RAGFlow's readers to them.

This module builds on actors/search/backup.py (the backup side); the restore side is the component's face for
restore and restore_kb.
"""
from __future__ import annotations

import fnmatch
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from actors.search.backup import (
    NAME,
    RepositoryMissing,
    classified,
    ensure_repository,
    http_status,
    public_url,
    response_body,
    snapshot_record,
)
from actors.search.restore_api import ALIAS_KEYS, RestoreApi, clone_settings, write_block
from core import clients
from core.checks import verify_artifacts
from core.component import PermanentError, before_first_write
from core.config import SearchSettings, Settings
from core.manifest import ComponentRecord
from core.points import Point

TEMP_PREFIX = "restore_"  # staging indices of live and per-KB restores: restore_<hex6>_<index>
URL_BUDGET = 3000  # comma-joined index names per request line (servers refuse lines over 4 KiB)
_BAD_NAME = re.compile(r'[\\/*?"<>| ,#:]')
# A point's repository registered here under another name for one restore (actors/actions/foreign.py: a copy
# fetched from the offsite repository): the name the point records -> the name it is registered under.
REGISTERED_AS: dict[str, str] = {}


@dataclass
class SearchRestoreResult:
    snapshot: str | None
    indices: dict[str, str]  # index in the backup -> index it was restored as
    expected: dict[str, int]  # documents per index in the backup's record
    found: dict[str, int]  # documents per index counted after the restore
    seconds: float
    live: bool  # True: under the live names; False: renamed copies (a drill)
    removed: list[str] = field(default_factory=list)  # exact mode: indices the point lacks, deleted (actors/search/exact.py)
    left: list[str] = field(default_factory=list)  # exact mode: indices the point lacks, kept (not in the safety point)

    @property
    def ok(self) -> bool:
        return self.expected == self.found


@dataclass
class KBRestoreResult:
    kb_id: str
    snapshot: str
    expected: dict[str, int]  # live index -> the KB's chunks in the snapshot
    found: dict[str, int]  # live index -> the KB's chunks there after the restore
    replaced: dict[str, int] = field(default_factory=dict)  # live index -> the KB's chunks deleted first
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.expected == self.found


def prefixed(prefix: str) -> dict[str, str]:
    """The `rename` of a drill: every index restored as `<prefix><index>`."""
    return {"pattern": "(.+)", "replacement": f"{prefix}$1"}


def restore(settings: Settings | SearchSettings, point: Point, record: ComponentRecord,
            indices: list[str] | None = None, rename: dict[str, str] | None = None,
            log: logging.Logger | None = None) -> SearchRestoreResult:
    """Restore `indices` (names or globs; default all the record counted) from the point's snapshot.

    Without `rename` the live indices are replaced, each only after its staged copy matched the record.
    With `rename` ({"pattern": regex, "replacement": "drill_$1"}, as the engines' rename_pattern and
    rename_replacement take them; see `prefixed`) new indices are created and no live index is touched;
    they stay for the caller to inspect and remove with `cleanup_temporary`.
    """
    search = _search(settings)
    log = log or logging.getLogger("ragflow_backup.restore.search")
    started = time.monotonic()
    with classified(search):
        with before_first_write():  # the point's checks, then the staging under temporary names
            api, info = _open(search, point, record, log)
            if info is None:  # nothing was indexed at backup time: no snapshot, nothing to bring back
                if indices:
                    raise PermanentError(f"the search backup of {point.ref} holds no index (it took no snapshot); "
                                         f"choose another point")
                return SearchRestoreResult(None, {}, {}, {}, time.monotonic() - started, rename is None)
            chosen = _choose(record, info, indices, point)
            expected = {name: record.counts[name] for name in chosen}
            snapshot = info["snapshot"]
            if rename is None:
                tag = f"{TEMP_PREFIX}{secrets.token_hex(3)}_"  # one per run: restore_<hex6>_<index>
                temps = {name: f"{tag}{name}" for name in chosen}
                aliases = _recorded_aliases(point, chosen)  # checked before anything changes
                _refuse_existing(api, list(temps.values()), "a staging index of an earlier restore")
                _stage(api, search, snapshot, temps, "(.+)", f"{tag}$1", expected, point, log)
        if rename is None:
            _swap(api, temps, search.snapshot_timeout_seconds, log)
            targets = {name: name for name in chosen}
            _put_aliases(api, aliases, log)
        else:
            targets = _renamed(search, chosen, rename)
            _refuse_existing(api, list(targets.values()), "an index of this name")
            _stage(api, search, snapshot, targets, rename["pattern"], rename["replacement"], expected, point, log)
        counted = _doc_counts(api.client, list(targets.values()))
        found = {name: counted.get(target, -1) for name, target in targets.items()}
    result = SearchRestoreResult(snapshot, targets, expected, found, time.monotonic() - started, rename is None)
    if not result.ok:
        differ = ", ".join(f"{targets[n]}: {found[n]} (backup: {expected[n]})"
                           for n in chosen if found[n] != expected[n])
        raise PermanentError(f"after restoring snapshot {snapshot} of {point.ref} the document counts differ: "
                             f"{differ}; something wrote to these indices during the restore (stop RAGFlow) - "
                             f"restore again")
    log.info("restored %d indices from snapshot %s (%s) in %.1fs", len(targets), snapshot,
             "live" if rename is None else "renamed", result.seconds)
    return result


def restore_kb(settings: Settings | SearchSettings, point: Point, record: ComponentRecord, kb_id: str,
               log: logging.Logger | None = None, indices: list[str] | None = None) -> KBRestoreResult:
    """Bring back the chunks of one knowledge base as the point holds them; other KBs' chunks stay as they are.

    The indices the record counted (or `indices`) are staged under temporary names; in each live index that
    holds the KB in the snapshot, the KB's current chunks are deleted and the snapshot's copied in under
    their ids (scroll + bulk). Chunks of this KB in indices that did not hold it at backup time are left alone.
    """
    search = _search(settings)
    log = log or logging.getLogger("ragflow_backup.restore.search")
    started = time.monotonic()
    if not kb_id or not isinstance(kb_id, str) or _BAD_NAME.search(kb_id):
        raise PermanentError(f"bad knowledge base id {kb_id!r}: give the id of RAGFlow's knowledgebase row (32 hex)")
    query = {"term": {"kb_id": kb_id}}
    with classified(search):
        with before_first_write():  # the point's checks, then the staging under temporary names
            api, info = _open(search, point, record, log)
            if info is None:
                raise PermanentError(f"knowledge base {kb_id} is in no index of {point.ref}: its search backup holds "
                                     f"no index; choose another point")
            chosen = _choose(record, info, indices, point)
            snapshot = info["snapshot"]
            tag = f"{TEMP_PREFIX}{secrets.token_hex(3)}_"
            temps = {name: f"{tag}{name}" for name in chosen}
            _refuse_existing(api, list(temps.values()), "a staging index of an earlier restore")
            _stage(api, search, snapshot, temps, "(.+)", f"{tag}$1", {n: record.counts[n] for n in chosen}, point,
                   log)
        exposed: str | None = None  # a live index whose KB chunks are deleted and not yet all copied back
        try:
            with before_first_write():
                expected = {name: n for name in chosen if (n := api.count(temps[name], query))}
                if not expected:
                    raise PermanentError(f"knowledge base {kb_id} has no chunk in snapshot {snapshot} of {point.ref} "
                                         f"(indices {_listing(chosen)}): check the id (RAGFlow's knowledgebase "
                                         "table) or choose another point")
                absent = [name for name in expected if not api.exists(name)]
                if absent:
                    raise PermanentError(f"live indices {', '.join(absent)} do not exist, so knowledge base {kb_id} "
                                         f"cannot be put back into them: restore the whole indices (restore with "
                                         f"indices={absent})")
            replaced: dict[str, int] = {}
            found: dict[str, int] = {}
            timeout = search.snapshot_timeout_seconds
            for name in expected:
                exposed = name
                replaced[name] = api.delete_matching(name, query, timeout)
                copied = api.copy_matching(temps[name], name, query, timeout)
                found[name] = api.count(name, query)
                exposed = None
                log.info("knowledge base %s in %s: %d chunks replaced by %d from snapshot %s", kb_id, name,
                         replaced[name], copied, snapshot)
        except Exception as exc:
            if exposed is None:
                raise
            raise _interrupted(exc, f"knowledge base {kb_id} in index {exposed} may be incomplete: restore_kb of "
                                    f"{point.ref} again") from exc
        finally:
            for temp in temps.values():
                _drop(api, temp, log)
    result = KBRestoreResult(kb_id, snapshot, expected, found, replaced, time.monotonic() - started)
    if not result.ok:
        raise PermanentError(f"knowledge base {kb_id} after the restore from snapshot {snapshot}: chunks {found}, "
                             f"the snapshot holds {expected}; something wrote to it meanwhile (stop RAGFlow) - "
                             f"restore it again")
    return result


def cleanup_temporary(settings: Settings | SearchSettings, prefix: str = TEMP_PREFIX,
                      log: logging.Logger | None = None) -> list[str]:
    """Delete every index whose name starts with `prefix` (a drill's, or staging left by a killed restore).

    Refuses, deleting nothing, when one of them falls under search.indices: those are live indices.
    """
    search = _search(settings)
    if len(prefix) < 3 or prefix != prefix.lower() or _BAD_NAME.search(prefix) or prefix[0] in "-_+.":
        raise PermanentError(f"refusing to delete indices by the prefix {prefix!r}: give a lowercase prefix of at "
                             f"least 3 characters without wildcards, such as {TEMP_PREFIX!r} or a drill's prefix")
    with classified(search):
        api = RestoreApi(clients.search_client(search), search.engine, search.repository)
        names = api.names(prefix)
        live = [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in search.indices)]
        if live:
            raise PermanentError(f"refusing to delete {_listing(live)}: they match search.indices "
                                 f"({', '.join(search.indices)}), so they are live; choose a prefix outside them")
        for name in names:
            api.delete_index(name)
            if log:
                log.info("deleted index %s (prefix %s)", name, prefix)
    return names


# ---------------------------------------------------------------- the machinery


def _search(settings: Settings | SearchSettings) -> SearchSettings:
    return settings.search if isinstance(settings, Settings) else settings


def _listing(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _open(search: SearchSettings, point: Point, record: ComponentRecord,
          log: logging.Logger) -> tuple[RestoreApi, dict[str, Any] | None]:
    """Check the record, its file and its snapshot before anything is done; (api, snapshot info or None)."""
    if record.component != NAME:
        raise PermanentError(f"the record given for {point.ref} is of component {record.component!r}, not '{NAME}'")
    if record.status != "ok":
        raise PermanentError(f"the search backup of {point.ref} failed ({record.error}): choose a point whose search "
                             f"backup is ok (`ragflow-backup list`)")
    problems = verify_artifacts(point, record)
    if problems:
        raise PermanentError(f"the search backup of {point.ref} is damaged ({'; '.join(problems)}): choose another "
                             f"point")
    name = record.details.get("snapshot")
    saved = snapshot_record(point) or {}
    if saved.get("snapshot") != name:
        raise PermanentError(f"{point.ref}: search_snapshot.json names snapshot {saved.get('snapshot')!r} but the "
                             f"manifest names {name!r}; choose another point")
    recorded_engine = record.details.get("engine")
    if recorded_engine and recorded_engine != search.engine:
        raise PermanentError(f"{point.ref} holds a snapshot of {recorded_engine}, but search.engine is "
                             f"{search.engine} ({public_url(search)}): it restores only into {recorded_engine}")
    repo_name = record.details.get("repository") or search.repository
    repo_name = REGISTERED_AS.get(repo_name, repo_name)
    api = RestoreApi(clients.search_client(search), search.engine, repo_name)
    if not name:
        return api, None
    where = f"repository {repo_name} on {search.engine} at {public_url(search)}"
    if api.location() is None:  # a rebuilt server: register the repository where the backup wrote it
        path = record.details.get("repository_path") or search.repository_path
        ensure_repository(search.model_copy(update={"repository": repo_name, "repository_path": path}), api, log)
    try:
        info = api.info(name)
    except RepositoryMissing:
        info = None
    if info is None:
        raise PermanentError(f"snapshot {name} of {point.ref} is missing from {where}: choose another point "
                             f"(`ragflow-backup verify` lists the sound ones)")
    if info.get("state") != "SUCCESS":
        raise PermanentError(f"snapshot {name} in {where} is {info.get('state')}, not SUCCESS: choose another point")
    # A name can be reused once its snapshot is deleted: only the recorded uuid is this point's data.
    if record.details.get("uuid") and info.get("uuid") != record.details["uuid"]:
        raise PermanentError(f"snapshot {name} in {where} is not the one {point.ref} took (uuid "
                             f"{info.get('uuid')} instead of {record.details['uuid']}): it was deleted and the name "
                             f"reused; choose another point")
    return api, info


def _choose(record: ComponentRecord, info: dict[str, Any], wanted: list[str] | None, point: Point) -> list[str]:
    """The recorded indices to restore: all, or those `wanted` names or globs; each must be in the snapshot."""
    recorded = sorted(record.counts)
    if wanted is None:
        chosen = recorded
    else:
        chosen, unknown = [], []
        for item in wanted:
            matched = [name for name in recorded if fnmatch.fnmatchcase(name, item)]
            if not matched:
                unknown.append(item)
            chosen += [name for name in matched if name not in chosen]
        if unknown or not chosen:
            raise PermanentError(f"{', '.join(unknown) or 'no index'} matches no index in the search backup of "
                                 f"{point.ref}; it holds {_listing(recorded) or 'none'}")
    absent = sorted(set(chosen) - set(info.get("indices") or []))
    if absent:
        raise PermanentError(f"snapshot {info.get('snapshot')} of {point.ref} lacks {_listing(absent)}, which its "
                             f"record counted: choose another point")
    return sorted(chosen)


def _java_rename(pattern: str, replacement: str, name: str) -> str:
    """`name` as the server's rename_pattern / rename_replacement turn it ($n groups, backslash escapes)."""
    def expand(match: re.Match[str]) -> str:
        out, i = [], 0
        while i < len(replacement):
            char = replacement[i]
            if char == "\\" and i + 1 < len(replacement):
                out.append(replacement[i + 1])
                i += 2
            elif char == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
                out.append(match.group(int(replacement[i + 1])) or "")
                i += 2
            else:
                out.append(char)
                i += 1
        return "".join(out)

    return re.sub(pattern, expand, name)


def _renamed(search: SearchSettings, chosen: list[str], rename: dict[str, str]) -> dict[str, str]:
    """The new name of each chosen index; refused unless they are new, valid and outside the live patterns."""
    if set(rename) != {"pattern", "replacement"}:
        raise PermanentError(f"rename needs exactly the keys 'pattern' and 'replacement' (got {sorted(rename)}); "
                             f"for a drill use prefixed('drill_')")
    try:
        targets = {name: _java_rename(rename["pattern"], rename["replacement"], name) for name in chosen}
    except (re.error, IndexError) as exc:
        raise PermanentError(f"bad rename {rename}: {exc}") from None
    bad = [t for t in targets.values() if not t or t != t.lower() or _BAD_NAME.search(t) or t[0] in "-_+."
           or len(t.encode()) > 255]
    same = [name for name, target in targets.items() if name == target]
    live = [t for t in targets.values() if any(fnmatch.fnmatchcase(t, p) for p in search.indices)]
    clash = len(set(targets.values())) != len(targets)
    if bad or same or live or clash:
        why = (f"invalid index names {_listing(bad)}" if bad else f"{_listing(same)} would keep their names" if same
               else f"{_listing(live)} would fall under search.indices ({', '.join(search.indices)})" if live
               else "two indices would get the same name")
        raise PermanentError(f"rename {rename} refused: {why}; a drill renames every index out of the live names, "
                             f"e.g. prefixed('drill_')")
    return targets


def _refuse_existing(api: RestoreApi, names: list[str], what: str) -> None:
    existing = [name for name in names if api.exists(name)]
    if existing:
        raise PermanentError(f"{_listing(existing)} already exist ({what}): delete them first, e.g. with "
                             f"cleanup_temporary(settings, prefix)")


def _batches(names: list[str]) -> list[str]:
    """Comma-joined groups of names, each short enough for a request line."""
    groups: list[str] = []
    for name in names:
        if groups and len(groups[-1]) + len(name) < URL_BUDGET:
            groups[-1] += "," + name
        else:
            groups.append(name)
    return groups


def _doc_counts(client: Any, names: list[str]) -> dict[str, int]:
    """Primaries' document counts after a refresh, counted as the backup counted them; absent names left out."""
    for group in _batches(names):
        client.indices.refresh(index=group, ignore_unavailable=True)
    per_index = response_body(client.indices.stats(metric="docs", expand_wildcards="open")).get("indices", {})
    return {name: int(per_index[name]["primaries"]["docs"]["count"]) for name in names if name in per_index}


def _drop(api: RestoreApi, index: str, log: logging.Logger) -> None:
    """Delete an index of ours if it is there; a failure is logged, as the original error is the one to report."""
    try:
        if api.exists(index):
            api.delete_index(index)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not delete index %s (%s): delete it by hand", index, exc)


def _stage(api: RestoreApi, search: SearchSettings, snapshot: str, targets: dict[str, str], pattern: str,
           replacement: str, expected: dict[str, int], point: Point, log: logging.Logger) -> None:
    """Restore the chosen indices under the names `targets` and check their counts; on any failure delete them."""
    try:
        log.info("restoring %d indices from snapshot %s as %s", len(targets), snapshot,
                 _listing(list(targets.values()), 3))
        body = api.restore(snapshot, sorted(targets), pattern, replacement, search.snapshot_timeout_seconds)
        done = body.get("snapshot") or {}
        shards = done.get("shards") or {}
        made = set(done.get("indices") or [])
        if made != set(targets.values()):
            raise RuntimeError(f"restoring snapshot {snapshot} created {_listing(sorted(made))}, not the expected "
                               f"{_listing(sorted(targets.values()))}")
        if shards.get("failed") or shards.get("successful") != shards.get("total"):
            raise RuntimeError(f"restoring snapshot {snapshot}: {shards.get('failed')} of {shards.get('total')} "
                               f"shards failed")
        counted = _doc_counts(api.client, list(targets.values()))
        differ = [f"{name}: {counted.get(target)} in the snapshot, {expected[name]} in the record"
                  for name, target in targets.items() if counted.get(target) != expected[name]]
        if differ:
            raise PermanentError(f"snapshot {snapshot} does not hold what the search record of {point.ref} counted "
                                 f"({'; '.join(differ)}); nothing live was touched: choose another point")
    except BaseException:
        for target in targets.values():
            _drop(api, target, log)
        raise


def _interrupted(exc: Exception, what: str) -> Exception:
    """An error for a restore stopped midway, kept permanent when the cause was (4xx other than timeouts)."""
    permanent = isinstance(exc, PermanentError) or (http_status(exc) or 0) in (400, 401, 403, 404)
    return (PermanentError if permanent else RuntimeError)(f"restore stopped midway ({type(exc).__name__}: {exc}); "
                                                          f"{what}")


def _swap(api: RestoreApi, temps: dict[str, str], timeout: float, log: logging.Logger) -> None:
    """Put each checked staging index under its live name.

    By _clone rather than a second restore: a clone hard-links the staged segments on the same nodes, so a
    live index is gone only for the seconds between its delete and its clone, while a second restore would
    copy everything from the repository again after the live index was deleted. (Stop RAGFlow first: a write
    in that gap would auto-create the live name and the clone would be refused.)
    """
    exposed: str | None = None  # deleted live index whose clone is not yet ready
    try:
        for name, temp in temps.items():
            staged = api.flat_settings(temp)  # read before the block below changes them
            api.block_writes(temp)  # a clone's source must be read-only
            exposed = name
            if api.exists(name):
                api.delete_index(name)
            api.clone(temp, name, clone_settings(staged))
            api.wait_ready(name, timeout)
            api.block_writes(name, write_block(staged))
            exposed = None
            api.delete_index(temp)
            log.info("index %s replaced by its copy from the snapshot", name)
    except Exception as exc:
        for name, temp in temps.items():
            if name != exposed:
                _drop(api, temp, log)
        if exposed is None:
            raise _interrupted(exc, "the indices not yet replaced are as they were") from exc
        raise _interrupted(exc, f"index {exposed} may be missing or incomplete; its checked copy is kept in "
                                f"{temps[exposed]} (write-blocked): run the restore again") from exc


def _recorded_aliases(point: Point, chosen: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The aliases each chosen index had at backup time, from the point's record (read back: checked)."""
    recorded = (snapshot_record(point) or {}).get("aliases") or {}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for name in chosen:
        aliases = recorded.get(name) if isinstance(recorded, dict) else None
        if not aliases:
            continue
        if not isinstance(aliases, dict) or not all(
                isinstance(alias, str) and alias and not _BAD_NAME.search(alias) and isinstance(spec, dict)
                and set(spec) <= set(ALIAS_KEYS) for alias, spec in aliases.items()):
            raise PermanentError(f"the aliases of index {name} in {point.ref}'s search_snapshot.json are malformed "
                                 f"(nothing was restored): choose another point")
        found[name] = aliases
    return found


def _put_aliases(api: RestoreApi, aliases: dict[str, dict[str, dict[str, Any]]], log: logging.Logger) -> None:
    """Give each replaced index the aliases it had at backup time (a clone, like a staged restore, has none).

    After the swap, not in the clone request: an alias the server refuses (say, another index became its write
    index meanwhile) must not leave a live index missing; the data is in place and only the alias is reported.
    """
    for name, its in aliases.items():
        try:
            api.add_aliases(name, its)
        except Exception as exc:
            raise _interrupted(exc, f"index {name} is restored, but its aliases {', '.join(sorted(its))} could "
                                    f"not be put back: add them by hand") from exc
        log.info("index %s: aliases %s put back", name, ", ".join(sorted(its)))
