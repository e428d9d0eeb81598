"""actors/mysql/rows.py: a dump's rows read from either layout and packed again, on tricky text."""
from __future__ import annotations

import pytest

from actors.mysql import changes
from actors.mysql.backup import DumpCounter
from actors.mysql.rows import Row, Schema, TextScan, items, lines, packed, row_key, schema_of

ONE_PER_LINE = b"""-- header
CREATE TABLE `t` (
  `id` varchar(32) NOT NULL,
  `v` text,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=utf8mb4;
LOCK TABLES `t` WRITE;
INSERT INTO `t` VALUES ('a','x\\ny),(\\'',1);
INSERT INTO `t` VALUES ('b',');\\nINSERT INTO `t` VALUES (',2);
UNLOCK TABLES;
DELIMITER ;;
INSERT INTO `t` VALUES ('in a trigger',3);;
DELIMITER ;
-- Dump completed on 2026-11-30
"""


def test_rows_packed_again_are_the_same_rows_in_one_statement_and_the_text_is_kept_as_it_was():
    chunks = [ONE_PER_LINE[i:i + 7] for i in range(0, len(ONE_PER_LINE), 7)]
    schema = schema_of([])
    out = b"".join(packed(chunks, schema))
    assert b"INSERT INTO `t` VALUES\n('a','x\\ny),(\\'',1),\n('b',');\\nINSERT INTO `t` VALUES (',2);\n" in out
    assert b"INSERT INTO `t` VALUES ('in a trigger',3);;\n" in out  # stored code is text
    assert [i for i in items(lines([out])) if isinstance(i, Row)] == \
        [i for i in items(lines([ONE_PER_LINE])) if isinstance(i, Row)]
    counter = DumpCounter()
    counter.feed(out)
    assert counter.finish().counts == {"t": 2} and counter.completed
    assert schema.keyed == {b"`t`": b"`id`"}


# MariaDB's own extended INSERTs: one row a line, a statement's last row ending in `);`.
ROW_PER_LINE = b"""-- header
CREATE TABLE `t` (
  `id` varchar(32) NOT NULL,
  `v` text,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=utf8mb4;
CREATE TABLE `empty` (
  `id` int NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
LOCK TABLES `t` WRITE;
INSERT INTO `t` VALUES
('a','x\\ny),(\\'',1),
('b',');\\nINSERT INTO `t` VALUES (',2),
('c','CREATE TABLE `x` (',3);
INSERT INTO `t` VALUES
('d','',4);
UNLOCK TABLES;
DELIMITER ;;
INSERT INTO `t` VALUES ('in a trigger',3);;
DELIMITER ;
-- Dump completed on 2026-11-30
"""


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_a_row_per_line_dump_scanned_in_blocks_of_any_size_gives_the_text_rows_and_schema_that_reading_it_line_by_line_gives(
        size):
    chunks = [ROW_PER_LINE[i:i + size] for i in range(0, len(ROW_PER_LINE), size)]
    text, schema = [], Schema.new()
    scan = TextScan(schema, on_text=text.append)
    for chunk in chunks:
        scan.feed(chunk)
    scan.finish()
    read = list(items(lines([ROW_PER_LINE]), strict=True))
    assert text == [item for item in read if not isinstance(item, Row)]
    assert scan.counts == {b"`t`": 4} and scan.rows_per_line
    assert schema.sha256 == schema_of([ROW_PER_LINE]).sha256 and schema.keyed == {b"`t`": b"`id`", b"`empty`": b"`id`"}
    counter = DumpCounter()
    counter.feed(ROW_PER_LINE)
    assert counter.finish().counts == {"t": 4, "empty": 0}


def test_a_dump_with_several_rows_on_one_line_is_no_row_per_line_dump_and_strict_reading_refuses_it():
    one_line = b"INSERT INTO `t` VALUES ('a),(',1),('b',2);\nINSERT INTO `t` VALUES ('c),(',3);\n-- Dump completed\n"
    scan = TextScan(Schema.new(), on_text=lambda line: None)
    scan.feed(one_line)
    scan.finish()
    assert not scan.rows_per_line and scan.counts == {b"`t`": 3}
    assert [item for item in items(lines([one_line.split(b"\n", 1)[1]]), strict=True) if isinstance(item, Row)] == \
        [Row(b"`t`", b"('c),(',3)")]
    with pytest.raises(ValueError, match="several rows on one line"):
        list(items(lines([one_line]), strict=True))


def test_the_schema_digest_ignores_comments_locks_and_auto_increment_counters():
    without_data = b"-- other date\nCREATE TABLE `t` (\n  `id` int,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"
    with_data = (b"-- a date\nCREATE TABLE `t` (\n  `id` int,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=5;\n"
                 b"LOCK TABLES `t` WRITE;\n/*!40000 ALTER TABLE `t` DISABLE KEYS */;\nINSERT INTO `t` VALUES (1);\n"
                 b"/*!40000 ALTER TABLE `t` ENABLE KEYS */;\nUNLOCK TABLES;\n\n")
    assert schema_of([without_data]).sha256 == schema_of([with_data]).sha256
    assert schema_of([without_data]).sha256 != schema_of([without_data.replace(b"`id` int", b"`id` bigint")]).sha256


def test_keys_compare_as_numbers_or_as_quoted_bytes():
    assert row_key(b"(9,'x')") < row_key(b"(10,'x')")
    assert row_key(b"('a\\'b',1)") == (1, b"'a\\'b'")
    assert row_key(b"('B',1)") < row_key(b"('a',1)")  # byte order: a _ci collation sorts them the other way


def test_a_tables_deletes_all_come_before_its_inserts_however_many_statements_they_take(tmp_path, monkeypatch):
    monkeypatch.setattr(changes, "BATCH_BYTES", 8)  # a DELETE statement every few keys
    head = b"CREATE TABLE `u` (\n  `id` int NOT NULL,\n  `mail` varchar(9),\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"
    base = head + b"".join(b"INSERT INTO `u` VALUES (%d,'m%d');\n" % (i, i) for i in range(1, 40)) + b"-- Dump completed\n"
    # The mail of row 39 moves to a new row 0; every odd row is gone.
    live = head + b"INSERT INTO `u` VALUES (0,'m39');\n" + b"".join(
        b"INSERT INTO `u` VALUES (%d,'m%d');\n" % (i, i) for i in range(2, 39, 2)) + b"-- Dump completed\n"
    writer = changes.ChangeWriter(tmp_path)
    out = b"".join(writer.run(items(lines([base])), items(lines([live])), schema_of([head])))
    assert out.count(b"DELETE FROM `u`") > 3
    assert out.rindex(b"DELETE FROM `u`") < out.index(b"INSERT INTO `u` VALUES\n(0,'m39');\n")
    counter = DumpCounter()
    counter.feed(out)
    counter.finish()
    assert counter.changes_completed and counter.deleted == {"u": 20} and counter.counts == {"u": 1}
    assert writer.counts == {b"`u`": 20} and list(tmp_path.iterdir()) == []
