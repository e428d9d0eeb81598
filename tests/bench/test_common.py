"""The benchmarks' shared parts: result rows, the merged results file and du counting (no timings)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import Row, du_bytes, load_rows, publish  # noqa: E402


def test_a_row_carries_the_keys_the_issue_asks_for_and_its_ratio():
    row = Row("1a initial mirror objects/s", 300.0, 600.0, "objects/s", "higher", "1,000 objects", "mc mirror")

    assert row.ratio == 0.5 and row.wins is False
    assert {"cores", "memory_gib"} <= set(row.machine)
    assert Row("2 wall", 1.0, 2.0, "s", "lower", "x").wins is True
    assert Row("6 verify", 1.0, None, "s", "lower", "x").ratio is None
    with pytest.raises(ValueError):
        Row("bad", 1.0, 1.0, "s", "smaller", "x")  # type: ignore[arg-type]


def test_publish_merges_every_scripts_rows_in_figure_order_into_one_results_file(tmp_path):
    publish("mysql_dump", [Row("4 dump", 2.0, 1.0, "s", "lower", "64 MiB")], tmp_path)
    results = publish("mirror_initial", [Row("1a mirror", 3.0, 1.0, "objects/s", "higher", "1,000")], tmp_path)

    rows = json.loads(results.read_text())
    assert [row["figure"] for row in rows] == ["1a mirror", "4 dump"]
    for row in rows:
        assert {"figure", "ours", "anchor", "ratio", "unit", "better", "size", "machine"} <= set(row)
        assert row["better"] in ("lower", "higher")
    assert [row.figure for row in load_rows(results)] == ["1a mirror", "4 dump"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_du_counts_a_hard_linked_file_once_like_du(tmp_path):
    (tmp_path / "daily").mkdir()
    (tmp_path / "weekly").mkdir()
    (tmp_path / "daily" / "dump.gz").write_bytes(b"x" * 1000)
    os.link(tmp_path / "daily" / "dump.gz", tmp_path / "weekly" / "dump.gz")
    (tmp_path / "weekly" / "manifest.json").write_bytes(b"y" * 10)

    assert du_bytes(tmp_path) == 1010
    assert du_bytes(tmp_path / "daily", tmp_path / "weekly") == 1010
    assert du_bytes(tmp_path / "weekly") == 1010
