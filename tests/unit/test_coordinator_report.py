"""The shard's report to the coordinator counts machines per instance type and zone."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from bigfleet.shard.coordclient import build_report
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import Machine, MachineState
from bigfleet.shard.engine.shortfall import ShortfallLedger


@dataclass
class View:
    inventory: Inventory
    shortfalls: ShortfallLedger = field(default_factory=ShortfallLedger)
    shard_id: str = "s"
    epoch: int = 1
    cycles: int = 0
    address: str = ""
    provider_address: str = ""


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),  # write (True) or remove
            st.integers(0, 7),  # machine
            st.sampled_from((MachineState.IDLE, MachineState.SPECULATIVE)),
            st.sampled_from(("", "m6i.large", "c6i.xlarge")),
            st.sampled_from(("", "zone-a", "zone-b")),
        ),
        max_size=40,
    )
)
def test_counts_per_type_and_zone_match_a_count_of_every_machine(
    ops: list[tuple[bool, int, MachineState, str, str]],
) -> None:
    inventory = Inventory()
    for write, i, state, itype, zone in ops:
        if write:
            host = f"fake/m{i}" if state is MachineState.IDLE else ""
            machine = Machine(id=f"m{i}", state=state, host=host, instance_type=itype, zone=zone)
            inventory.upsert(machine, 0.0)
        else:
            inventory.remove(f"m{i}")
    summary = build_report(View(inventory), []).summary  # type: ignore[arg-type]
    machines = inventory.machines()
    assert dict(summary.per_instance_type_counts) == Counter(
        m.instance_type for m in machines if m.instance_type
    )
    assert dict(summary.per_zone_counts) == Counter(m.zone for m in machines if m.zone)
    assert summary.total_machines == len(machines)
