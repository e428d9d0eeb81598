"""RAGFlow v0.27's own index shapes for the seeder and the tests: `ragflow_<tenant>` and `ragflow_doc_meta_<tenant>`.

The bodies (settings and mappings, dynamic templates included) are the project's copy of what RAGFlow creates,
kept in testbed/ragflow_v027_indices.json. A server refuses a whole index when one part of its mapping needs a
module it lacks, so the parts a server cannot hold are left out, as the modules it reports say; everything
else is RAGFlow's. The test bed's Elasticsearch (an integ-test distribution) lacks the modules for three parts
(README, test bed); its OpenSearch gets them from scripts/testbed, all but the k-NN plugin.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).with_name("ragflow_v027_indices.json")
SCRIPTED_SIMILARITY = "scripted_sim"  # RAGFlow's similarity for *_tks fields, a painless script

# Part of RAGFlow's mapping -> the module or plugin a server needs for it, per engine.
NEEDS = {
    "elasticsearch": {"scripted similarity": "lang-painless", "rank_feature": "mapper-extras",
                      "rank_features": "mapper-extras", "unsigned_long": "unsigned-long"},
    # OpenSearch has unsigned_long in its core (2.8+).
    "opensearch": {"scripted similarity": "lang-painless", "rank_feature": "mapper-extras",
                   "rank_features": "mapper-extras", "knn_vector": "opensearch-knn"},
}


def _fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _engine(client: Any) -> str:
    return "opensearch" if type(client).__module__.split(".")[0] == "opensearchpy" else "elasticsearch"


def server_modules(client: Any) -> set[str]:
    """The modules and plugins every node of the cluster has."""
    nodes = client.nodes.info(metric="plugins")
    nodes = getattr(nodes, "body", nodes)["nodes"].values()
    per_node = [{item["name"] for item in node.get("modules", []) + node.get("plugins", [])} for node in nodes]
    return set.intersection(*per_node) if per_node else set()


def unsupported(engine: str, modules: set[str]) -> list[str]:
    """The parts of RAGFlow's mapping a server with `modules` cannot hold, each with the module it lacks."""
    return [f"{part} (module {module})" for part, module in NEEDS[engine].items() if module not in modules]


def chunk_index_body(engine: str, modules: set[str]) -> dict[str, Any]:
    """RAGFlow's body for `ragflow_<tenant>` on `engine`, less what a server with `modules` cannot hold."""
    body = copy.deepcopy(_fixture()["chunks"][engine])
    missing = {part for part, module in NEEDS[engine].items() if module not in modules}
    settings = body["settings"]
    if "scripted similarity" in missing:
        # Elasticsearch's file has the similarity beside `index`, OpenSearch's inside it.
        for holder in (settings, settings.get("index", {})):
            holder.get("similarity", {}).pop(SCRIPTED_SIMILARITY, None)
            if holder.get("similarity") == {}:
                del holder["similarity"]
    if "knn_vector" in missing:
        settings.get("index", {}).pop("knn", None)  # an unknown setting without the plugin
    templates = []
    for template in body["mappings"]["dynamic_templates"]:
        (spec,) = template.values()
        if spec["mapping"].get("type") in missing:
            continue
        if "scripted similarity" in missing and spec["mapping"].get("similarity") == SCRIPTED_SIMILARITY:
            del spec["mapping"]["similarity"]  # the field keeps its type and analyzer, with the default BM25
        templates.append(template)
    body["mappings"]["dynamic_templates"] = templates
    return body


def doc_meta_index_body(engine: str) -> dict[str, Any]:
    """RAGFlow's body for `ragflow_doc_meta_<tenant>` (its file is written for Elasticsearch).

    OpenSearch has no runtime fields, so there `dynamic: runtime` becomes `true`: new metadata fields are
    mapped (indexed) rather than computed at query time.
    """
    body = copy.deepcopy(_fixture()["doc_meta"])
    if engine == "opensearch" and body["mappings"].get("dynamic") == "runtime":
        body["mappings"]["dynamic"] = True
    return body


def _create(client: Any, index: str, body: dict[str, Any]) -> None:
    if _engine(client) == "opensearch":
        client.indices.create(index=index, body=body)
    else:
        client.indices.create(index=index, settings=body["settings"], mappings=body["mappings"])


def create_chunk_index(client: Any, index: str) -> None:
    """Create `index` as RAGFlow creates a tenant's chunk index, as far as the server can hold it."""
    engine = _engine(client)
    _create(client, index, chunk_index_body(engine, server_modules(client)))


def create_doc_meta_index(client: Any, index: str) -> None:
    """Create `index` as RAGFlow creates a tenant's document-metadata index."""
    _create(client, index, doc_meta_index_body(_engine(client)))
