"""Restoring indices and knowledge bases from search snapshots, on the real Elasticsearch 8 and OpenSearch 2."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from actors.actions.runs import run_component
from actors.search import COMPONENT
from actors.search import backup as search
from actors.search.restore import TEMP_PREFIX, cleanup_temporary, prefixed, restore, restore_kb
from core import clients
from core.component import NothingChanged, PermanentError
from core.config import SearchSettings, Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point, Storage
from testbed import ragflow_indices
from tests.conftest import unique

# Chunks per knowledge base in each tenant's index, as RAGFlow keeps them: one index per tenant.
TENANTS = {"ragflow_t1": {"kb_a": 4, "kb_b": 3}, "ragflow_t2": {"kb_c": 2}}
MAPPINGS = {"properties": {"kb_id": {"type": "keyword"}, "doc_id": {"type": "keyword"},
                           "content_with_weight": {"type": "text"}}}


@dataclass
class Bed:
    """A backed-up pair of tenant indices, and small helpers speaking both clients' dialects."""

    settings: Settings
    point: Point
    record: ComponentRecord
    client: Any
    prefix: str

    @property
    def es(self) -> bool:
        return self.settings.search.engine == "elasticsearch"

    def name(self, tenant: str) -> str:
        return f"{self.prefix}{tenant}"

    def put(self, index: str, doc_id: str, kb_id: str, text: str) -> None:
        doc = {"kb_id": kb_id, "doc_id": f"doc-{kb_id}", "content_with_weight": text}
        if self.es:
            self.client.index(index=index, id=doc_id, document=doc, refresh=True)
        else:
            self.client.index(index=index, id=doc_id, body=doc, refresh=True)

    def remove(self, index: str, doc_id: str) -> None:
        self.client.delete(index=index, id=doc_id, refresh=True)

    def docs(self, index: str, kb_id: str | None = None) -> dict[str, dict[str, Any]]:
        query = {"term": {"kb_id": kb_id}} if kb_id else {"match_all": {}}
        self.client.indices.refresh(index=index)
        if self.es:
            body = self.client.search(index=index, query=query, size=1000)
        else:
            body = self.client.search(index=index, body={"query": query, "size": 1000})
        return {hit["_id"]: hit["_source"] for hit in body["hits"]["hits"]}

    def exists(self, index: str) -> bool:
        return bool(self.client.indices.exists(index=index))

    def staging_left(self) -> list[str]:
        return sorted(self.client.indices.get_settings(index=f"{TEMP_PREFIX}*{self.prefix}*", name="index.uuid",
                                                       expand_wildcards="all", allow_no_indices=True))


def make_tenant_index(bed: Bed, index: str, kbs: dict[str, int]) -> None:
    settings = {"number_of_shards": 1, "number_of_replicas": 0}  # a single node stays green
    if bed.es:
        bed.client.indices.create(index=index, settings=settings, mappings=MAPPINGS)
    else:
        bed.client.indices.create(index=index, body={"settings": settings, "mappings": MAPPINGS})
    for kb_id, n in kbs.items():
        for i in range(n):
            bed.put(index, f"{kb_id}-{i}", kb_id, f"chunk {i} of {kb_id}")


@pytest.fixture
def cfg(search_settings: SearchSettings, index_prefix: str) -> Iterator[SearchSettings]:
    """Our indices only. Afterwards: any staging or drill copy of them, then the snapshots and the repository."""
    cfg = search_settings.model_copy(update={"indices": [f"{index_prefix}*"]})
    yield cfg
    client = clients.search_client(cfg)
    copies = client.indices.get_settings(index=f"*{index_prefix}*", name="index.uuid", expand_wildcards="all",
                                         allow_no_indices=True)
    for name in copies:
        if not name.startswith(index_prefix):  # the index_prefix fixture deletes the rest
            client.indices.delete(index=name)
    repo = search.SnapshotRepo(client, cfg.engine, cfg.repository)
    try:
        names = [info["snapshot"] for info in repo.snapshots()]
    except search.RepositoryMissing:
        return
    for name in names:
        repo.delete(name)
    repo.unregister()


@pytest.fixture
def bed(cfg: SearchSettings, index_prefix: str, tmp_path) -> Bed:
    """Two tenant indices, backed up through run_component into a point of their own."""
    settings = Settings(storage_root=tmp_path / "backups", search=cfg)
    point = Storage(settings.storage_root).new_point([search.NAME])
    bed = Bed(settings, point, None, clients.search_client(cfg), index_prefix)  # type: ignore[arg-type]
    for tenant, kbs in TENANTS.items():
        make_tenant_index(bed, bed.name(tenant), kbs)
    bed.record = run_component(settings, point, search.NAME)
    assert bed.record.status == "ok", bed.record.error
    assert bed.record.counts == {bed.name(t): sum(kbs.values()) for t, kbs in TENANTS.items()}
    return bed


def test_a_deleted_index_comes_back_with_the_same_documents(bed):
    t1, t2 = bed.name("ragflow_t1"), bed.name("ragflow_t2")
    backed_up = bed.docs(t1)
    bed.client.indices.delete(index=t1)

    result = restore(bed.settings, bed.point, bed.record)  # all indices

    assert result.ok and result.live
    assert result.indices == {t1: t1, t2: t2}
    assert result.found == result.expected == bed.record.counts
    assert result.snapshot == bed.record.details["snapshot"]
    assert sorted(bed.docs(t1)) == sorted(backed_up)
    assert bed.docs(t1) == backed_up
    assert bed.staging_left() == []
    # The live index takes writes again: the staging copy's write block did not come along.
    bed.put(t1, "after-restore", "kb_a", "new chunk")
    assert len(bed.docs(t1)) == bed.record.counts[t1] + 1


def test_documents_added_and_deleted_after_the_backup_are_undone_in_the_chosen_index_only(bed):
    t1, t2 = bed.name("ragflow_t1"), bed.name("ragflow_t2")
    backed_up = bed.docs(t1)
    bed.put(t1, "late", "kb_a", "written after the backup")
    bed.remove(t1, "kb_a-0")
    bed.put(t1, "kb_b-1", "kb_b", "edited after the backup")
    bed.put(t2, "late", "kb_c", "written after the backup")

    result = restore(bed.settings, bed.point, bed.record, indices=[t1])

    assert result.indices == {t1: t1} and result.found == {t1: bed.record.counts[t1]}
    assert sorted(bed.docs(t1)) == sorted(backed_up)
    assert bed.docs(t1) == backed_up
    assert "late" in bed.docs(t2)  # not chosen, not touched
    assert bed.staging_left() == []


def test_a_drill_restores_renamed_copies_and_leaves_the_live_indices_alone(bed):
    t1, t2 = bed.name("ragflow_t1"), bed.name("ragflow_t2")
    backed_up = {t1: bed.docs(t1), t2: bed.docs(t2)}
    bed.put(t1, "late", "kb_a", "written after the backup")
    live = {t1: bed.docs(t1), t2: bed.docs(t2)}
    drill = f"{unique('drill')}_"

    result = restore(bed.settings, bed.point, bed.record, rename=prefixed(drill))

    assert result.ok and not result.live
    assert result.indices == {t1: f"{drill}{t1}", t2: f"{drill}{t2}"}
    assert result.found == bed.record.counts
    for name, copy in result.indices.items():
        assert sorted(bed.docs(copy)) == sorted(backed_up[name])
        assert bed.docs(name) == live[name]
    assert bed.staging_left() == []

    assert cleanup_temporary(bed.settings, drill) == sorted(result.indices.values())
    assert not any(bed.exists(copy) for copy in result.indices.values())
    assert bed.exists(t1) and bed.exists(t2)


def test_a_rename_into_the_live_names_is_refused_before_anything_is_created(bed):
    t1 = bed.name("ragflow_t1")
    before = bed.docs(t1)

    with pytest.raises(PermanentError, match="search.indices"):
        restore(bed.settings, bed.point, bed.record, rename={"pattern": "(.+)", "replacement": "$1_copy"})
    with pytest.raises(PermanentError, match="keep their names"):
        restore(bed.settings, bed.point, bed.record, rename={"pattern": "^nothing$", "replacement": "x"})

    assert not bed.exists(f"{t1}_copy")
    assert bed.docs(t1) == before


def test_a_record_whose_counts_disagree_is_refused_and_nothing_live_is_touched(bed):
    t1 = bed.name("ragflow_t1")
    bed.put(t1, "late", "kb_a", "written after the backup")
    before = bed.docs(t1)
    wrong = bed.record.model_copy(update={"counts": {**bed.record.counts, t1: bed.record.counts[t1] + 1}})

    with pytest.raises(NothingChanged, match="nothing live was touched") as caught:
        restore(bed.settings, bed.point, wrong)

    assert t1 in str(caught.value)
    assert bed.docs(t1) == before
    assert bed.staging_left() == []


def test_a_server_that_forgot_the_repository_gets_it_registered_again_and_restores(bed):
    t1 = bed.name("ragflow_t1")
    backed_up = bed.docs(t1)
    search.SnapshotRepo(bed.client, bed.settings.search.engine, bed.settings.search.repository).unregister()
    bed.client.indices.delete(index=t1)

    result = restore(bed.settings, bed.point, bed.record, indices=["*ragflow_t1"])  # globs choose too

    assert result.indices == {t1: t1} and result.ok
    assert bed.docs(t1) == backed_up


def test_a_damaged_record_file_is_refused_before_anything_is_done(bed):
    t1 = bed.name("ragflow_t1")
    bed.client.indices.delete(index=t1)
    path = bed.point.path("search_snapshot.json")
    path.write_text(path.read_text().replace('"SUCCESS"', '"SUCCESZ"'))

    with pytest.raises(NothingChanged, match="damaged.*SHA-256"):
        restore(bed.settings, bed.point, bed.record)

    assert not bed.exists(t1)
    assert bed.staging_left() == []


def test_restore_kb_brings_back_one_knowledge_base_and_leaves_the_others_as_they_are(bed):
    t1, t2 = bed.name("ragflow_t1"), bed.name("ragflow_t2")
    kb_a = bed.docs(t1, "kb_a")
    for doc_id in kb_a:  # by id: the test bed's minimal servers have no _delete_by_query (reindex module)
        bed.remove(t1, doc_id)
    assert bed.docs(t1, "kb_a") == {}
    bed.put(t1, "kb_a-late", "kb_a", "a chunk of kb_a written after the backup")
    bed.put(t1, "kb_b-2", "kb_b", "changed after the backup")
    others = {t1: bed.docs(t1, "kb_b"), t2: bed.docs(t2)}

    result = restore_kb(bed.settings, bed.point, bed.record, "kb_a")

    assert result.ok and result.kb_id == "kb_a"
    assert result.expected == result.found == {t1: len(kb_a)}
    assert result.replaced == {t1: 1}  # the chunk written after the backup
    assert sorted(bed.docs(t1, "kb_a")) == sorted(kb_a)
    assert bed.docs(t1, "kb_a") == kb_a
    assert bed.docs(t1, "kb_b") == others[t1]
    assert bed.docs(t1, "kb_b")["kb_b-2"]["content_with_weight"] == "changed after the backup"
    assert bed.docs(t2) == others[t2]
    assert bed.staging_left() == []


def test_an_unknown_knowledge_base_is_refused(bed):
    t1 = bed.name("ragflow_t1")
    before = bed.docs(t1)

    with pytest.raises(NothingChanged, match="kb_nowhere.*no chunk"):
        restore_kb(bed.settings, bed.point, bed.record, "kb_nowhere")

    assert bed.docs(t1) == before
    assert bed.staging_left() == []


def test_cleanup_refuses_a_prefix_that_would_delete_live_indices(bed):
    with pytest.raises(PermanentError, match="search.indices"):
        cleanup_temporary(bed.settings, bed.prefix)

    assert bed.exists(bed.name("ragflow_t1")) and bed.exists(bed.name("ragflow_t2"))


def test_a_seeded_ragflow_tenant_index_and_knowledge_base_come_back_whole(search_settings, tmp_path):
    """RAGFlow-shaped chunks (keyword ids, text, vectors) from the seeder, in its own ragflow_<tenant> index."""
    from testbed import seed as seeder

    ds = seeder.seed(search=search_settings, size="tiny")
    cfg = search_settings.model_copy(update={"indices": ds.indices})
    settings = Settings(storage_root=tmp_path / "backups", search=cfg)
    bed = Bed(settings, Storage(settings.storage_root).new_point([search.NAME]), None,  # type: ignore[arg-type]
              clients.search_client(cfg), "")
    try:
        bed.record = run_component(settings, bed.point, search.NAME)
        assert bed.record.status == "ok", bed.record.error
        assert bed.record.counts == ds.doc_counts
        (index,) = ds.indices
        kb, other = ds.kb_ids[:2]
        chunks, others = bed.docs(index, kb), bed.docs(index, other)
        assert len(chunks) == 12 and len(others) == 12
        for chunk_id in chunks:
            bed.remove(index, chunk_id)

        result = restore_kb(settings, bed.point, bed.record, kb)

        assert result.expected == result.found == {index: 12}
        assert bed.docs(index, kb) == chunks  # the same ids, text and vectors
        assert bed.docs(index, other) == others

        bed.client.indices.delete(index=index)
        whole = restore(settings, bed.point, bed.record)
        assert whole.found == ds.doc_counts
        assert bed.docs(index, kb) == chunks and bed.docs(index, other) == others
        assert sorted(bed.client.indices.get_settings(index=f"*{index}*", name="index.uuid")) == [index]
    finally:
        seeder.remove(ds, search=cfg)
        client = clients.search_client(cfg)
        for name in client.indices.get_settings(index=f"*{ds.tenant_ids[0]}*", name="index.uuid",
                                                allow_no_indices=True, expand_wildcards="all"):
            client.indices.delete(index=name)
        repo = search.SnapshotRepo(client, cfg.engine, cfg.repository)
        try:
            for info in repo.snapshots():
                repo.delete(info["snapshot"])
            repo.unregister()
        except search.RepositoryMissing:
            pass


# ---------------------------------------------------------------- RAGFlow's own index shape, every setting kept

# What differs between any two indices: identity, creation, and (OpenSearch) the clone a restore makes them by.
PER_INDEX = ("index.uuid", "index.creation_date", "index.provided_name", "index.version.", "index.resize.")


def shape(client: Any, index: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An index's effective settings (its own over the defaults, less PER_INDEX) and its mappings."""
    body = client.indices.get_settings(index=index, flat_settings=True, include_defaults=True)[index]
    settings = {k: v for k, v in {**body["defaults"], **body["settings"]}.items() if not k.startswith(PER_INDEX)}
    return settings, client.indices.get_mapping(index=index)[index]["mappings"]


def differences(index_shape: tuple[dict[str, Any], dict[str, Any]],
                original: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Settings whose values differ (key: (now, original)), and the mappings if they differ."""
    (settings, mappings), (was, was_mappings) = index_shape, original
    found = {key: (settings.get(key), was.get(key)) for key in settings.keys() | was.keys()
             if settings.get(key) != was.get(key)}
    if mappings != was_mappings:
        found["mappings"] = (mappings, was_mappings)
    return found


def aliases_of(client: Any, index: str) -> dict[str, Any]:
    return client.indices.get_alias(index=index)[index]["aliases"]


def green(client: Any, index: str) -> bool:
    return client.cluster.health(index=index, wait_for_status="green")["status"] == "green"  # waits up to 30 s


@dataclass
class RagflowBed(Bed):
    """A tenant's chunk and doc-meta indices made as RAGFlow makes them, an alias on the chunks, backed up."""

    shapes: dict[str, tuple[dict[str, Any], dict[str, Any]]] = None  # type: ignore[assignment]
    alias: str = ""

    @property
    def chunks(self) -> str:
        return self.name("ragflow_t1")

    @property
    def meta(self) -> str:
        return self.name("ragflow_doc_meta_t1")

    def chunk(self, doc_id: str, kb_id: str) -> None:
        """A chunk with a field for each kind of RAGFlow's dynamic templates."""
        doc = {"kb_id": kb_id, "doc_id": f"doc-{kb_id}", "title_tks": "annual report", "content_ltks": "revenue grew",
               "content_with_weight": "Revenue grew.", "page_num_int": [1], "create_time": "2026-11-29 12:00:00",
               "create_timestamp_flt": 1.5, "pagerank_fea": 10, "tag_feas": {"finance": 3}, "size_ulong": 7,
               "q_512_vec": [0.5] * 512, "important_kwd": ["revenue"]}
        if self.es:
            self.client.index(index=self.chunks, id=doc_id, document=doc, refresh=True)
        else:
            self.client.index(index=self.chunks, id=doc_id, body=doc, refresh=True)


@pytest.fixture
def ragflow_bed(cfg: SearchSettings, index_prefix: str, tmp_path) -> RagflowBed:
    settings = Settings(storage_root=tmp_path / "backups", search=cfg)
    point = Storage(settings.storage_root).new_point([search.NAME])
    bed = RagflowBed(settings, point, None, clients.search_client(cfg), index_prefix)  # type: ignore[arg-type]
    ragflow_indices.create_chunk_index(bed.client, bed.chunks)
    ragflow_indices.create_doc_meta_index(bed.client, bed.meta)
    for i in range(3):
        bed.chunk(f"a-{i}", "kb_a")
    bed.chunk("b-0", "kb_b")
    meta = {"id": "doc-kb_a", "kb_id": "kb_a", "meta_fields": {"author": "Zoë"}}
    if bed.es:
        bed.client.index(index=bed.meta, id="doc-kb_a", document=meta, refresh=True)
    else:
        bed.client.index(index=bed.meta, id="doc-kb_a", body=meta, refresh=True)
    bed.alias = f"{index_prefix}alias_t1"
    alias = {"index": bed.chunks, "alias": bed.alias, "filter": {"term": {"kb_id": "kb_a"}}}
    if bed.es:
        bed.client.indices.update_aliases(actions=[{"add": alias}])
    else:
        bed.client.indices.update_aliases(body={"actions": [{"add": alias}]})
    bed.shapes = {index: shape(bed.client, index) for index in (bed.chunks, bed.meta)}
    bed.record = run_component(settings, point, search.NAME)
    assert bed.record.status == "ok", bed.record.error
    assert bed.record.counts == {bed.chunks: 4, bed.meta: 1}
    return bed


def test_ragflow_indices_are_made_with_ragflow_settings_and_what_the_server_can_hold_of_its_mapping(ragflow_bed):
    bed = ragflow_bed
    settings, mappings = bed.shapes[bed.chunks]
    assert (settings["index.number_of_shards"], settings["index.number_of_replicas"]) == ("2", "0")
    assert settings["index.refresh_interval"] == "1000ms"
    modules = ragflow_indices.server_modules(bed.client)
    wanted = ragflow_indices.chunk_index_body(bed.settings.search.engine, modules)["mappings"]["dynamic_templates"]
    assert mappings["dynamic_templates"] == wanted
    held = {type_ for template in wanted for spec in template.values() for type_ in [spec["mapping"].get("type")]}
    assert ("rank_feature" in held) == ("mapper-extras" in modules)
    assert mappings["properties"]["kb_id"] == {"type": "keyword", "store": True, "similarity": "boolean"}
    assert bed.shapes[bed.meta][1]["dynamic"] == ("runtime" if bed.es else "true")  # OpenSearch: no runtime fields


def test_a_restored_index_has_every_setting_mapping_and_alias_of_the_original_and_a_single_node_stays_green(
        ragflow_bed):
    bed = ragflow_bed
    backed_up = bed.docs(bed.chunks)
    bed.client.indices.delete(index=bed.chunks)
    bed.chunk("late", "kb_b")  # auto-creates the live name with a mapping of its own, which the restore replaces

    result = restore(bed.settings, bed.point, bed.record)

    assert result.ok and result.indices == {bed.chunks: bed.chunks, bed.meta: bed.meta}
    for index in (bed.chunks, bed.meta):
        assert differences(shape(bed.client, index), bed.shapes[index]) == {}
        assert green(bed.client, index)
    assert aliases_of(bed.client, bed.chunks) == {bed.alias: {"filter": {"term": {"kb_id": "kb_a"}}}}
    assert bed.docs(bed.chunks) == backed_up
    assert bed.staging_left() == []
    bed.chunk("after-restore", "kb_a")  # writable: neither the staging copy's write block nor a read-only alias
    assert "after-restore" in bed.docs(bed.alias)


def test_a_knowledge_base_restore_leaves_the_live_index_settings_as_they_were(ragflow_bed):
    bed = ragflow_bed
    for doc_id in bed.docs(bed.chunks, "kb_a"):
        bed.remove(bed.chunks, doc_id)

    result = restore_kb(bed.settings, bed.point, bed.record, "kb_a")

    assert result.ok and result.found == {bed.chunks: 3, bed.meta: 1}  # its doc-meta entry too
    assert shape(bed.client, bed.chunks) == bed.shapes[bed.chunks]
    assert aliases_of(bed.client, bed.chunks) == {bed.alias: {"filter": {"term": {"kb_id": "kb_a"}}}}
    assert green(bed.client, bed.chunks)


def test_a_drill_copy_has_the_original_settings_and_mappings_and_no_alias_to_send_readers_to_it(ragflow_bed):
    bed = ragflow_bed
    drill = f"{unique('drill')}_"

    result = restore(bed.settings, bed.point, bed.record, rename=prefixed(drill))

    for name, copy in result.indices.items():
        assert differences(shape(bed.client, copy), bed.shapes[name]) == {}
        assert aliases_of(bed.client, copy) == {} and green(bed.client, copy)
        assert differences(shape(bed.client, name), bed.shapes[name]) == {}  # the live indices are untouched
    assert aliases_of(bed.client, bed.chunks) == {bed.alias: {"filter": {"term": {"kb_id": "kb_a"}}}}
    assert bed.docs(bed.alias).keys() == {"a-0", "a-1", "a-2"}
    cleanup_temporary(bed.settings, drill)


def test_an_index_backed_up_read_only_comes_back_read_only_and_the_others_writable(cfg, index_prefix, tmp_path):
    settings = Settings(storage_root=tmp_path / "backups", search=cfg)
    point = Storage(settings.storage_root).new_point([search.NAME])
    bed = Bed(settings, point, None, clients.search_client(cfg), index_prefix)  # type: ignore[arg-type]
    frozen, open_ = bed.name("ragflow_frozen"), bed.name("ragflow_open")
    make_tenant_index(bed, frozen, {"kb_a": 2})
    make_tenant_index(bed, open_, {"kb_b": 2})
    if bed.es:
        bed.client.indices.put_settings(index=frozen, settings={"index.blocks.write": True})
    else:
        bed.client.indices.put_settings(index=frozen, body={"index.blocks.write": True})
    before = {index: shape(bed.client, index) for index in (frozen, open_)}
    bed.record = run_component(settings, point, search.NAME)
    assert bed.record.status == "ok", bed.record.error

    restore(settings, point, bed.record)

    for index in (frozen, open_):
        assert differences(shape(bed.client, index), before[index]) == {}
    assert shape(bed.client, frozen)[0]["index.blocks.write"] == "true"
    assert shape(bed.client, open_)[0]["index.blocks.write"] == "false"


# ---------------------------------------------------------------- exact restores (upgrade rollback, restore --exact)


@pytest.fixture
def tenant_names(cfg: SearchSettings) -> Iterator[list[str]]:
    """Three RAGFlow-named tenant indices of this test's own (created by the test as it needs them)."""
    names = [unique("ragflow_") + f"_t{n}" for n in range(3)]
    yield names
    for name in names:
        clients.search_client(cfg).indices.delete(index=name, ignore_unavailable=True)


def test_an_exact_restore_deletes_ragflow_indices_the_safety_point_holds_and_no_other(bed, tenant_names):
    kept_tenant, new_tenant, late_tenant = tenant_names
    cfg = bed.settings.search.model_copy(update={"indices": [*bed.settings.search.indices, *tenant_names]})
    settings = Settings(storage_root=bed.settings.storage_root, search=cfg)
    make_tenant_index(bed, kept_tenant, {"kb_k": 2})
    point = Storage(settings.storage_root).new_point([search.NAME])
    record = run_component(settings, point, search.NAME)
    make_tenant_index(bed, new_tenant, {"kb_n": 1})  # a tenant made after the point (an upgrade, say)
    make_tenant_index(bed, bed.name("not_ragflows"), {"kb_x": 1})  # matches search.indices, not RAGFlow's naming
    safety = Storage(settings.storage_root).new_point([search.NAME])
    assert run_component(settings, safety, search.NAME).status == "ok"
    make_tenant_index(bed, late_tenant, {"kb_l": 1})  # written after the safety point was taken

    result = COMPONENT.restore(settings, RestoreRequest(point=point, record=record, exact=True, held_by=safety))

    assert (result.removed, result.left) == ([new_tenant], [late_tenant])
    assert not bed.exists(new_tenant) and bed.exists(late_tenant) and bed.exists(bed.name("not_ragflows"))
    assert result.ok and bed.exists(kept_tenant) and all(bed.exists(bed.name(t)) for t in TENANTS)
