"""Interval search snapshots (issue 15): the time and the repository bytes one interval snapshot adds after 1 % of
the chunks changed (actors/search/interval.py, the agent's own path), against the point's snapshot of the same
index into a fresh repository (what the first nightly point copies).

    python bench/search_interval.py [--quick] [--runs N] [--chunks N]

One index of RAGFlow's mapping (testbed/ragflow_indices.py) with chunks shaped as the test bed's seed makes them,
on the test bed's Elasticsearch; each run gets its own repository. The bytes are the server's own count of what a
snapshot added to the repository (`_snapshot/<repo>/<name>/_status`: stats.incremental.size_in_bytes).
Everything is deleted afterwards.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.search import interval  # noqa: E402
from actors.search.backup import SnapshotRepo, ensure_repository, response_body, wait_for_snapshot  # noqa: E402
from bench.common import MiB, Row, median, print_table, publish, timed  # noqa: E402
from core import clients  # noqa: E402
from core.config import Settings  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed import ragflow_indices  # noqa: E402
from testbed import settings as testbed_settings  # noqa: E402

log = logging.getLogger("bench.search_interval")
WORDS = "retrieval augmented generation knowledge base chunk parser embedding vector token answer".split()


def chunk(rng: random.Random, number: int, generation: int) -> dict:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(60, 200))) + f" v{generation}"
    return {"kb_id": "bench", "doc_id": f"doc{number // 20}", "docnm_kwd": f"doc {number // 20}.pdf",
            "content_with_weight": body, "content_ltks": body, "page_num_int": [number % 20 + 1], "available_int": 1,
            "q_8_vec": [round(rng.uniform(0.01, 1.0), 6) for _ in range(8)]}


def put(client, index: str, numbers: range | list[int], rng: random.Random, generation: int) -> None:
    numbers = list(numbers)
    for start in range(0, len(numbers), 1000):
        ops: list[dict] = []
        for number in numbers[start:start + 1000]:
            ops += [{"index": {"_index": index, "_id": f"c{number}"}}, chunk(rng, number, generation)]
        if client.bulk(operations=ops)["errors"]:
            raise RuntimeError(f"bulk indexing into {index} failed")
    client.indices.refresh(index=index)


def added_bytes(client, repository: str, snapshot: str) -> int:
    body = response_body(client.snapshot.status(repository=repository, snapshot=snapshot))
    return int(body["snapshots"][0]["stats"]["incremental"]["size_in_bytes"])


def one_run(env, index: str, chunks: int, rng: random.Random, folder: Path) -> dict[str, float]:
    repository = f"bench_interval_{uuid.uuid4().hex[:8]}"
    search = testbed_settings.search("elasticsearch", env, repository=repository).model_copy(
        update={"indices": [index]})
    settings = Settings(storage_root=folder / repository, search=search)
    client = clients.search_client(search)
    repo = SnapshotRepo(client, search.engine, repository)
    ensure_repository(search, repo, log)
    try:
        with timed() as point:
            repo.start(f"{search.snapshot_prefix}point", [index])
            wait_for_snapshot(repo, f"{search.snapshot_prefix}point", 3600)
        point_bytes = added_bytes(client, repository, f"{search.snapshot_prefix}point")
        put(client, index, rng.sample(range(chunks), max(1, chunks // 100)), rng, generation=2)
        with timed() as hourly:
            taken = interval.take(settings, log)
        assert taken is not None
        return {"point_s": point.wall, "point_b": point_bytes, "interval_s": hourly.wall,
                "interval_b": added_bytes(client, repository, taken.name)}
    finally:
        for info in repo.snapshots():
            repo.delete(info["snapshot"])
        repo.unregister()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=0)
    args = parser.parse_args()
    chunks = args.chunks or (5_000 if args.quick else 50_000)
    env = testbed_env.load()
    client = clients.search_client(testbed_settings.search("elasticsearch", env))
    index = f"ragflow_bench_{uuid.uuid4().hex[:8]}"
    rng = random.Random(15)
    ragflow_indices.create_chunk_index(client, index)
    try:
        put(client, index, range(chunks), rng, generation=1)
        client.indices.flush(index=index)  # the store's size counts segments on disk, not the translog
        size = f"{chunks:,} chunks, {int(response_body(client.indices.stats(index=index))['_all']['primaries']['store']['size_in_bytes']) / MiB:,.0f} MiB; 1 % changed"
        with tempfile.TemporaryDirectory() as folder:
            runs = [one_run(env, index, chunks, rng, Path(folder)) for _ in range(args.runs)]
    finally:
        client.indices.delete(index=index)
    note = f"median of {args.runs} runs, each into a fresh repository; bytes: the server's incremental size"
    rows = [
        Row(figure="11 interval search snapshot wall", ours=median(r["interval_s"] for r in runs),
            anchor=median(r["point_s"] for r in runs), unit="s", better="lower", size=size,
            anchor_name="the point's snapshot (full)", note=note),
        Row(figure="11 interval search snapshot repository bytes", ours=median(r["interval_b"] for r in runs) / MiB,
            anchor=median(r["point_b"] for r in runs) / MiB, unit="MiB", better="lower", size=size,
            anchor_name="the point's snapshot (full)", note=note),
    ]
    publish("search_interval", rows)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
