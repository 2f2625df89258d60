"""The demand snapshot, merged from the last one, equals the table sorted afresh (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from bigfleet.shard.engine.needs import Need, NeedsTable
from tests.unit.engine.builders import profile

CLUSTERS = [f"c{i}" for i in range(5)]
PROFILES = {priority: profile(priority) for priority in (0, 100, 200)}


def rows_of(cluster: str) -> st.SearchStrategy[list[Need]]:
    a_need = st.builds(
        lambda priority, arrival, cpu: Need(
            cluster=cluster,
            profile=PROFILES[priority],
            aggregate={"cpu": cpu},
            arrival=arrival,
        ),
        st.sampled_from(sorted(PROFILES)),
        st.integers(0, 3),  # few arrivals: many ties, broken by cluster, then row
        st.integers(1, 4),
    )
    return st.lists(a_need, max_size=6)


def other_amount(need: Need) -> Need:
    return replace(need, aggregate={"cpu": need.aggregate["cpu"] + 1})


def sorted_afresh(table: NeedsTable) -> list[Need]:
    rows = [need for cluster in table.clusters() for need in table.rows(cluster)]
    return sorted(rows, key=lambda n: (-n.priority, n.arrival, n.cluster))  # stable


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_snapshot_after_any_replacements_is_the_table_sorted_afresh(data: st.DataObject) -> None:
    table = NeedsTable()
    for _ in range(data.draw(st.integers(1, 12))):
        for cluster in data.draw(st.lists(st.sampled_from(CLUSTERS), min_size=1, max_size=3)):
            if data.draw(st.booleans()):
                table.replace(cluster, data.draw(rows_of(cluster)))
            else:  # other amounts only, as most roll-ups: every row keeps its place
                table.replace(cluster, [other_amount(n) for n in table.rows(cluster)])
        snapshot = table.snapshot()
        assert [id(n) for n in snapshot] == [id(n) for n in sorted_afresh(table)]
        assert [id(n) for n in table.snapshot()] == [id(n) for n in snapshot]  # unchanged
