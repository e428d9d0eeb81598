"""docs/reliability.md is what the fault markers say (tests/faults/table.py): it cannot drift from the tests."""
from __future__ import annotations

from tests.faults import table


def test_the_reliability_table_equals_what_the_fault_markers_generate():
    assert table.DOC.read_text() == table.render(table.collect()), "run `python -m tests.faults.table`"


def test_every_fault_marker_names_a_case_and_what_the_product_does():
    cases = table.collect()
    assert len(cases) >= 20
    assert all(case.case.strip() and len(case.outcome) > 10 for case in cases)
