"""Wire <-> engine records, at the shard's edge.

Provider `Machine` messages become engine Machines (quantities parsed once to
milli-units, the `assigned_*` attribution decoded from `shard_metadata`), and
roll-ups become Needs after validation: a bucket outside 0..27, an unknown
operator or an unparseable quantity rejects the whole roll-up.
"""

from __future__ import annotations

from collections.abc import Mapping

from bigfleet import penalty, quantity
from bigfleet.requirements import Operator
from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.machine import CapacityType, Machine, MachineState
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.engine.profile import Profile, Requirement, Spread
from bigfleet.wire import capacity_pb2, provider_pb2

# shard_metadata keys, shared with the Go shard so either can restart the other's machines.
META_PRIORITY = "bigfleet.lucy.sh/assigned-priority"
META_INTERRUPTION = "bigfleet.lucy.sh/assigned-interruption-penalty-dollars"
META_RECLAMATION = "bigfleet.lucy.sh/assigned-reclamation-penalty-dollars"
META_FINGERPRINT = "bigfleet.lucy.sh/assigned-need-fingerprint"
META_GROUP = "bigfleet.lucy.sh/assigned-group"

_SPREAD = {
    capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE: "DoNotSchedule",
    capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_SCHEDULE_ANYWAY: "ScheduleAnyway",
}
_SPREAD_NUMBERS = {v: k for k, v in _SPREAD.items()}


class InvalidRollup(ValueError):
    """A roll-up the shard refuses whole; the cluster's last accepted demand stays."""


def vector_from_wire(quantities: Mapping[str, str]) -> dict[str, int]:
    return {name: quantity.to_milli(text) for name, text in quantities.items()}


def vector_to_wire(vector: rv.Vector) -> dict[str, str]:
    return {name: quantity.from_milli(milli) for name, milli in sorted(vector.items())}


# -- machines ---------------------------------------------------------------------------------


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def _int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def machine_from_wire(m: provider_pb2.Machine) -> Machine:
    """The engine record of a provider machine. Malformed metadata decodes as absent."""
    meta = m.shard_metadata
    host = f"{m.host.provider}/{m.host.ref}" if m.HasField("host") and m.host.ref else ""
    return Machine(
        id=m.id,
        state=MachineState(m.state),
        host=host,
        cluster=m.cluster,
        instance_type=m.instance_type,
        zone=m.zone,
        capacity_type=CapacityType(m.capacity_type),
        resources=vector_from_wire(m.resources.resources),
        labels=dict(m.labels),
        allocatable=vector_from_wire(m.allocatable.resources),
        price_per_hour=m.price_per_hour,
        interruption_probability=m.interruption_probability,
        last_error=m.last_error,
        assigned_priority=_int(meta.get(META_PRIORITY)),
        assigned_interruption_penalty=_float(meta.get(META_INTERRUPTION)),
        assigned_reclamation_penalty=_float(meta.get(META_RECLAMATION)),
        assigned_need_fingerprint=meta.get(META_FINGERPRINT, ""),
        assigned_group=meta.get(META_GROUP, ""),
    )


def attribution_metadata(need: Need) -> dict[str, str]:
    """Stored with the provider at Configure so a restarted shard knows whom a machine serves."""
    return {
        META_PRIORITY: str(need.priority),
        META_INTERRUPTION: repr(penalty.upper_bound(need.profile.interruption_bucket)),
        META_RECLAMATION: repr(penalty.upper_bound(need.profile.reclamation_bucket)),
        META_FINGERPRINT: need.fingerprint,
        META_GROUP: need.group,
    }


# -- demand -----------------------------------------------------------------------------------


def need_from_wire(cluster: str, n: capacity_pb2.CapacityNeed, arrival: int) -> Need:
    for bucket in (n.interruption_penalty_bucket, n.reclamation_penalty_bucket):
        if not 0 <= bucket <= penalty.PINNED:
            raise InvalidRollup(f"penalty bucket {bucket} is outside 0..27")
    requirements = []
    for r in n.requirements:
        try:
            operator = Operator.from_wire(r.operator)
        except ValueError:
            raise InvalidRollup(
                f"requirement on {r.key!r} has unknown operator {r.operator}"
            ) from None
        requirements.append(Requirement(r.key, operator, tuple(r.values)))
    spread = [
        Spread(s.topology_key, s.max_skew, _SPREAD.get(s.when_unsatisfiable, "ScheduleAnyway"))
        for s in n.spread
    ]
    try:
        aggregate = vector_from_wire(n.aggregate_resources)
        min_unit = vector_from_wire(n.min_unit)
    except quantity.InvalidQuantity as err:
        raise InvalidRollup(str(err)) from err
    profile = Profile(
        tuple(requirements),
        tuple(spread),
        n.priority,
        n.interruption_penalty_bucket,
        n.reclamation_penalty_bucket,
    )
    return Need(
        cluster=cluster,
        profile=profile,
        aggregate=aggregate,
        min_unit=min_unit,
        group=n.group,
        arrival=arrival,
    )


def rollup_from_wire(rollup: capacity_pb2.ClusterCapacityNeeds) -> list[Need]:
    """Every need of a roll-up, or InvalidRollup for the whole of it."""
    if not rollup.cluster_id:
        raise InvalidRollup("roll-up without cluster_id")
    return [need_from_wire(rollup.cluster_id, n, rollup.timestamp_unix_nanos) for n in rollup.needs]


def requirement_to_wire(r: Requirement) -> capacity_pb2.NodeSelectorRequirement:
    return capacity_pb2.NodeSelectorRequirement(
        key=r.key,
        operator=r.operator.wire,  # type: ignore[arg-type]
        values=r.values,
    )


def need_to_wire(need: Need) -> capacity_pb2.CapacityNeed:
    p = need.profile
    return capacity_pb2.CapacityNeed(
        requirements=[requirement_to_wire(r) for r in p.requirements],
        aggregate_resources=vector_to_wire(need.aggregate),
        priority=p.priority,
        spread=[
            capacity_pb2.TopologySpread(
                topology_key=s.topology_key,
                max_skew=s.max_skew,
                when_unsatisfiable=_SPREAD_NUMBERS[s.when_unsatisfiable],
            )
            for s in p.spread
        ],
        interruption_penalty_bucket=p.interruption_bucket,  # type: ignore[arg-type]
        reclamation_penalty_bucket=p.reclamation_bucket,  # type: ignore[arg-type]
        min_unit=vector_to_wire(need.min_unit),
        group=need.group,
    )
