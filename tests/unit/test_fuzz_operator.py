"""Random and adversarial CapacityRequests through the operator's translation.

Whatever a request holds (the API server may admit odd quantities, and kopf hands
over whatever the object is), a roll-up is still built: every request is either
translated or reported as a problem naming it, nothing escapes `build`, and the
shard takes the roll-up whole (one request it would refuse costs the cluster all).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bigfleet.operators.operator.rollup import build
from bigfleet.shard.codec import rollup_from_wire

QUANTITIES = st.one_of(
    st.sampled_from(
        ["1", "500m", "8Gi", "1Ei", "2E", "8Ei", "1e999999", "-8", "1e100", "", "Ki", "0", "0m"]
    ),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)
NAMES = st.one_of(
    st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "CPU cores", ""]), st.text(max_size=8)
)
VALUES: st.SearchStrategy[Any] = st.one_of(
    QUANTITIES,
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
REQUIREMENT = st.fixed_dictionaries(
    {
        "key": st.one_of(
            st.sampled_from(["zone", "node.kubernetes.io/instance-type"]), st.text(max_size=6)
        ),
        "operator": st.one_of(
            st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt"]), st.text(max_size=4)
        ),
        "values": st.one_of(st.lists(st.text(max_size=6), max_size=3), st.none(), st.integers()),
    }
)
SPEC = st.fixed_dictionaries(
    {},
    optional={
        "resources": st.one_of(st.dictionaries(NAMES, QUANTITIES, max_size=3), VALUES),
        "priority": st.one_of(
            st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=3)
        ),
        "requirements": st.one_of(st.lists(REQUIREMENT, max_size=3), VALUES),
        "interruptionPenalty": QUANTITIES,
        "reclamationPenalty": QUANTITIES,
        "topologySpread": st.lists(
            st.fixed_dictionaries(
                {
                    "topologyKey": st.text(max_size=6),
                    "maxSkew": st.integers(min_value=-5, max_value=5),
                    "whenUnsatisfiable": st.sampled_from(["DoNotSchedule", "ScheduleAnyway", "?"]),
                }
            ),
            max_size=2,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(SPEC, VALUES), min_size=1, max_size=6))
def test_every_request_is_translated_or_reported_and_the_rollup_goes_out(specs: list[Any]) -> None:
    crs = [
        {"metadata": {"name": f"cr-{i}", "namespace": "ns"}, "spec": spec, "status": {}}
        for i, spec in enumerate(specs)
    ]
    rollup = build("c1", crs, now_ns=0)
    named = {t.name for t in rollup.translated} | {name for _, name, _ in rollup.problems}
    assert named == {cr["metadata"]["name"] for cr in crs}
    assert not {t.name for t in rollup.translated} & {name for _, name, _ in rollup.problems}
    assert all(why for _, _, why in rollup.problems)
    assert rollup.message.cluster_id == "c1"
    rollup_from_wire(rollup.message)  # the shard refuses none of it
