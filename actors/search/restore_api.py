"""The calls a search restore makes on Elasticsearch / OpenSearch, spelled for either engine's client.

Split from actors/search/restore.py, which decides what is restored where; this module only talks to the server.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from actors.search.backup import SnapshotRepo, http_status, response_body

BULK_SIZE = 500  # documents per scroll page and per bulk request (chunks carry embedding vectors)
# What an alias definition may hold (GET _alias shows these; the add action takes them back).
ALIAS_KEYS = ("filter", "index_routing", "search_routing", "routing", "is_write_index", "is_hidden")
# Settings a clone must not be given: the server sets them for each index itself (identity, creation, the
# clone's provenance), or they cannot be set at all (archived ones). The write block is decided separately.
NOT_CLONED = ("index.uuid", "index.creation_date", "index.provided_name", "index.version.", "index.resize.",
              "index.routing.allocation.initial_recovery.", "index.blocks.write", "archived.")


def clone_settings(staged: dict[str, Any]) -> dict[str, Any]:
    """Settings for the clone of a staged index: all of the staged index's own (as the snapshot holds them),
    less those the server owns, and the write block the snapshot had (usually none), not the one the clone
    needed on its source."""
    settings = {key: value for key, value in staged.items() if not key.startswith(NOT_CLONED)}
    # None drops the source's block; the clone then holds a literal null, which write_block() clears after.
    settings["index.blocks.write"] = staged.get("index.blocks.write")
    return settings


def write_block(staged: dict[str, Any]) -> bool | None:
    """The write block the snapshot's index had: none (None) almost always."""
    value = staged.get("index.blocks.write")
    return None if value is None else str(value).lower() == "true"


class RestoreApi(SnapshotRepo):
    """SnapshotRepo plus the calls a restore makes; the two clients spell them differently only here."""

    def _within(self, timeout: float) -> Any:
        """The ES client with a longer request timeout; opensearch-py takes request_timeout per call instead."""
        return self.client.options(request_timeout=timeout) if self.es else self.client

    def restore(self, snapshot: str, indices: list[str], pattern: str, replacement: str, timeout: float) -> dict:
        # Aliases stay behind: restored with renamed indices they would point readers at the staged copies.
        if self.es:
            return response_body(self._within(timeout).snapshot.restore(
                repository=self.name, snapshot=snapshot, indices=indices, rename_pattern=pattern,
                rename_replacement=replacement, include_global_state=False, include_aliases=False,
                wait_for_completion=True))
        body = {"indices": ",".join(indices), "rename_pattern": pattern, "rename_replacement": replacement,
                "include_global_state": False, "include_aliases": False}
        return response_body(self.client.snapshot.restore(repository=self.name, snapshot=snapshot, body=body,
                                                   wait_for_completion=True, request_timeout=timeout))

    def names(self, prefix: str) -> list[str]:
        found = self.client.indices.get_settings(index=f"{prefix}*", name="index.uuid", expand_wildcards="all",
                                                 allow_no_indices=True)
        return sorted(response_body(found))

    def exists(self, index: str) -> bool:
        return bool(self.client.indices.exists(index=index))

    def delete_index(self, index: str) -> None:
        self.client.indices.delete(index=index)

    def block_writes(self, index: str, block: bool | None = True) -> None:
        """Set the write block (None: remove the setting, as on an index that never had one)."""
        if self.es:
            self.client.indices.put_settings(index=index, settings={"index.blocks.write": block})
        else:
            self.client.indices.put_settings(index=index, body={"index.blocks.write": block})

    def flat_settings(self, index: str) -> dict[str, Any]:
        """The index's own settings (not the defaults), as flat `index.x.y` keys."""
        body = response_body(self.client.indices.get_settings(index=index, flat_settings=True))
        return dict(body[index]["settings"])

    def clone(self, source: str, target: str, settings: dict[str, Any]) -> None:
        """Clone `source` as `target` with `settings` (see clone_settings): the clone API alone would give the
        target the cluster's default replica count (1) and keep the source's write block."""
        if self.es:
            self.client.indices.clone(index=source, target=target, settings=settings)
        else:
            self.client.indices.clone(index=source, target=target, body={"settings": settings})

    def add_aliases(self, index: str, aliases: dict[str, dict[str, Any]]) -> None:
        """Put `aliases` ({alias: its definition as GET _alias shows it}) on `index` in one atomic request."""
        actions = [{"add": {**{k: v for k, v in spec.items() if k in ALIAS_KEYS}, "index": index, "alias": alias}}
                   for alias, spec in aliases.items()]
        if self.es:
            self.client.indices.update_aliases(actions=actions)
        else:
            self.client.indices.update_aliases(body={"actions": actions})

    def wait_ready(self, index: str, timeout: float) -> None:
        """Every primary of `index` started (yellow: a single node never gets its replicas)."""
        try:
            body = response_body(self._within(timeout + 30).cluster.health(
                index=index, wait_for_status="yellow", timeout=f"{int(timeout)}s",
                **({} if self.es else {"request_timeout": timeout + 30})))
        except Exception as exc:
            if http_status(exc) != 408:
                raise
            body = {"timed_out": True}
        if body.get("timed_out"):
            raise TimeoutError(f"index {index} did not become ready (yellow) within {timeout:.0f}s")

    def count(self, index: str, query: dict) -> int:
        if self.es:
            return int(response_body(self.client.count(index=index, query=query))["count"])
        return int(response_body(self.client.count(index=index, body={"query": query}))["count"])

    # The KB copy reads and writes through scroll + bulk, not the server's _delete_by_query / _reindex: those
    # live in the `reindex` module, which minimal distributions (the integ-test zips of our test bed, some
    # managed offerings) leave out, while scroll and bulk are core everywhere.

    def _helpers(self) -> Any:
        if self.es:
            from elasticsearch import helpers  # lazy: the engine not in use is never loaded
        else:
            from opensearchpy import helpers  # lazy: the engine not in use is never loaded
        return helpers

    def _hits(self, index: str, query: dict, source: bool) -> Iterator[dict[str, Any]]:
        """Every document matching `query`, from a scroll: a point-in-time view, safe to write under."""
        return self._helpers().scan(self.client, query={"query": query, "_source": source}, index=index,
                                    size=BULK_SIZE, scroll="10m")

    def _bulk(self, actions: Iterable[dict[str, Any]], index: str, doing: str, timeout: float) -> int:
        client = self._within(timeout) if self.es else self.client
        extra = {} if self.es else {"request_timeout": timeout}
        done, failed = self._helpers().bulk(client, actions, chunk_size=BULK_SIZE, raise_on_error=False,
                                            raise_on_exception=True, **extra)
        # A delete of a document someone else deleted meanwhile answers 404: the goal is reached all the same.
        errors = [e for e in failed if not (isinstance(e, dict) and e.get("delete", {}).get("status") == 404)]
        if errors:
            first = next(iter(errors[0].values()), {}) if isinstance(errors[0], dict) else errors[0]
            raise RuntimeError(f"{doing}: {len(errors)} documents failed, the first: {first}")
        self.client.indices.refresh(index=index)
        return int(done)

    def delete_matching(self, index: str, query: dict, timeout: float) -> int:
        """Delete the documents of `index` matching `query`; how many were there."""
        actions = ({"_op_type": "delete", "_index": index, "_id": hit["_id"], **_routing(hit)}
                   for hit in self._hits(index, query, source=False))
        return self._bulk(actions, index, f"deleting from {index}", timeout)

    def copy_matching(self, source: str, dest: str, query: dict, timeout: float) -> int:
        """Copy the documents of `source` matching `query` into `dest` under the same ids; how many."""
        actions = ({"_op_type": "index", "_index": dest, "_id": hit["_id"], "_source": hit["_source"],
                    **_routing(hit)} for hit in self._hits(source, query, source=True))
        return self._bulk(actions, dest, f"copying {source} into {dest}", timeout)


def _routing(hit: dict[str, Any]) -> dict[str, str]:
    return {"routing": hit["_routing"]} if hit.get("_routing") else {}
