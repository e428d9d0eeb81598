"""Rows per table counted from pg_restore's COPY text, however the stream is cut into pieces."""
from __future__ import annotations

from actors.postgres.backup import CopyCounter

TEXT = (b"SET statement_timeout = 0;\n"
        b'COPY public."user" (id, nickname) FROM stdin;\n'
        b"a1\tZo\\u00eb\n"
        b"a2\t\\\\.\n"  # a value that is a backslash and a dot, escaped: not the end of the data
        b"a3\tline one\\nline two\n"
        b"\\.\n"
        b"\n"
        b"COPY public.task (id) FROM stdin;\n"
        b"\\.\n"
        b"COPY other.document (id) FROM stdin;\n"
        b"d1\n"
        b"\\.\n")


def counted(pieces: list[bytes]) -> dict[str, int]:
    counter = CopyCounter()
    for piece in pieces:
        counter.feed(piece)
    return counter.finish()


def test_rows_are_counted_per_table_wherever_the_stream_is_cut():
    expected = {"user": 3, "task": 0, "other.document": 1}
    assert counted([TEXT]) == expected
    for cut in range(1, len(TEXT)):
        assert counted([TEXT[:cut], TEXT[cut:]]) == expected, cut
    assert counted([TEXT[i:i + 1] for i in range(len(TEXT))]) == expected
