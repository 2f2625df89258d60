"""Wire <-> engine records, at the shard's edge.

Provider `Machine` messages become engine Machines (quantities parsed once to
milli-units, the `assigned_*` attribution decoded from `shard_metadata`); a
record this shard cannot represent (no id, an unknown state or capacity type, a
bad quantity) raises InvalidMachine with a reason, and is refused on its own.

Roll-ups become Needs after validating every field: one bad field (a quantity
that is negative, unparsable or out of range, a `min_unit` not positive or above
its aggregate, a bucket outside 0..27, an unknown operator, a name breaking the
Kubernetes rules, an over-long `group`, too many needs) raises InvalidRollup,
naming the field path and value, and the whole roll-up is refused. docs/shard.md
("What the shard accepts") lists the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bigfleet import k8snames, penalty, quantity
from bigfleet.requirements import Operator
from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.machine import CapacityType, InvalidMachine, Machine, MachineState
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.engine.profile import Profile, Requirement, Spread
from bigfleet.wire import capacity_pb2, provider_pb2

# shard_metadata keys, shared with the Go shard so either can restart the other's machines.
META_PRIORITY = "bigfleet.lucy.sh/assigned-priority"
META_INTERRUPTION = "bigfleet.lucy.sh/assigned-interruption-penalty-dollars"
META_RECLAMATION = "bigfleet.lucy.sh/assigned-reclamation-penalty-dollars"
META_FINGERPRINT = "bigfleet.lucy.sh/assigned-need-fingerprint"
META_GROUP = "bigfleet.lucy.sh/assigned-group"

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

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


# Why a provider record is refused, the `reason` label of
# bigfleet_shard_machines_rejected_total. The first four are decoding's own;
# the rest are the engine's invariants (`engine.machine.check`).
REJECT_ID = "id"  # no machine id
REJECT_STATE = "state"  # a state this shard does not know (or UNSPECIFIED)
REJECT_CAPACITY_TYPE = "capacity_type"  # a capacity type this shard does not know
REJECT_QUANTITY = "quantity"  # a resource quantity unparsable, negative or out of range
MACHINE_REJECT_REASONS = (
    REJECT_ID,
    REJECT_STATE,
    REJECT_CAPACITY_TYPE,
    REJECT_QUANTITY,
    "structural",
    "price",
    "interruption_probability",
)
_STATES = frozenset(s.value for s in MachineState if s is not MachineState.UNSPECIFIED)
_CAPACITY_TYPES = frozenset(c.value for c in CapacityType)


def _float(text: str | None) -> float:
    try:
        value = float(text) if text else 0.0
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


def _int(text: str | None) -> int:
    if not text or len(text) > 12:
        return 0
    try:
        value = int(text)
    except ValueError:
        return 0
    return value if INT32_MIN <= value <= INT32_MAX else 0


def _resources(machine_id: str, field_name: str, quantities: Mapping[str, str]) -> dict[str, int]:
    vector = {}
    for name, text in quantities.items():
        try:
            milli = quantity.to_milli(text)
        except quantity.InvalidQuantity as err:
            raise InvalidMachine(
                machine_id, REJECT_QUANTITY, f"{field_name}[{name!r}]: {err}"
            ) from None
        if milli < 0:
            raise InvalidMachine(
                machine_id, REJECT_QUANTITY, f"{field_name}[{name!r}]: {_show(text)} is negative"
            )
        vector[name] = milli
    return vector


def machine_from_wire(m: provider_pb2.Machine) -> Machine:
    """The engine record of a provider machine, or InvalidMachine (a ValueError) with a
    reason from MACHINE_REJECT_REASONS; malformed shard_metadata decodes as absent.

    Decoding refuses what it cannot represent; the state invariants are checked where
    the record is written (`engine.machine.check`, on every inventory write)."""
    if not m.id:
        raise InvalidMachine(m.id, REJECT_ID, "record without a machine id")
    if m.state not in _STATES:
        raise InvalidMachine(m.id, REJECT_STATE, f"state {m.state} is not a known state")
    if m.capacity_type not in _CAPACITY_TYPES:
        raise InvalidMachine(
            m.id, REJECT_CAPACITY_TYPE, f"capacity type {m.capacity_type} is not known"
        )
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
        resources=_resources(m.id, "resources", m.resources.resources),
        labels=dict(m.labels),
        allocatable=_resources(m.id, "allocatable", m.allocatable.resources),
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

MAX_NEEDS_PER_ROLLUP = 50_000  # default cap on needs in one roll-up; the session layer's flag
MAX_GROUP_BYTES = 1024  # `group` is an opaque gang id, compared for equality only
_SHOWN = 64  # characters of a refused value quoted in a message


def _show(value: object) -> str:
    text = repr(value)
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN]}... ({len(str(value))} characters)"


def _name(path: str, kind: str, text: str, problem: str | None) -> None:
    if problem is not None:
        raise InvalidRollup(f"{path}: {_show(text)} is not a valid {kind}: {problem}")


def _vector(path: str, field_name: str, quantities: Mapping[str, str]) -> dict[str, int]:
    """Resource names and non-negative quantities within the engine's range, in milli-units.
    Error paths are spelled only when there is an error: most roll-ups have none."""
    vector = {}
    for name, text in quantities.items():
        problem = k8snames.label_key_error(name)
        if problem is not None:
            _name(f"{path}.{field_name}", "resource name", name, problem)
        try:
            milli = quantity.to_milli(text)
        except quantity.InvalidQuantity as err:
            raise InvalidRollup(f"{path}.{field_name}[{name!r}]: {err}") from None
        if milli < 0:
            raise InvalidRollup(f"{path}.{field_name}[{name!r}]: {_show(text)} is negative")
        vector[name] = milli
    return vector


def need_from_wire(
    cluster: str, n: capacity_pb2.CapacityNeed, arrival: int, path: str = "need"
) -> Need:
    """The engine Need of a wire need, or InvalidRollup naming the field (`path` prefixes it)."""
    if not INT32_MIN <= n.priority <= INT32_MAX:
        raise InvalidRollup(f"{path}.priority: {n.priority} is outside the int32 range")
    for field_name in ("interruption_penalty_bucket", "reclamation_penalty_bucket"):
        bucket = getattr(n, field_name)
        if not 0 <= bucket <= penalty.PINNED:
            raise InvalidRollup(f"{path}.{field_name}: {bucket} is outside 0..{penalty.PINNED}")
    requirements = []
    for i, r in enumerate(n.requirements):
        problem = k8snames.label_key_error(r.key)
        if problem is not None:
            _name(f"{path}.requirements[{i}].key", "label key", r.key, problem)
        try:
            operator = Operator.from_wire(r.operator)
        except ValueError:
            raise InvalidRollup(
                f"{path}.requirements[{i}].operator: {r.operator} is not a known operator"
            ) from None
        values = tuple(r.values)
        for j, value in enumerate(values):
            problem = k8snames.label_value_error(value)
            if problem is not None:
                _name(f"{path}.requirements[{i}].values[{j}]", "label value", value, problem)
        requirements.append(Requirement(r.key, operator, values))
    spread = []
    for i, s in enumerate(n.spread):
        where = f"{path}.spread[{i}]"
        _name(
            f"{where}.topology_key",
            "label key",
            s.topology_key,
            k8snames.label_key_error(s.topology_key),
        )
        if s.max_skew < 1:
            raise InvalidRollup(f"{where}.max_skew: {s.max_skew} is less than 1")
        if s.when_unsatisfiable == capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_UNSPECIFIED:
            when = "ScheduleAnyway"
        elif s.when_unsatisfiable in _SPREAD:
            when = _SPREAD[s.when_unsatisfiable]
        else:
            raise InvalidRollup(
                f"{where}.when_unsatisfiable: {s.when_unsatisfiable} is not a known value"
            )
        spread.append(Spread(s.topology_key, s.max_skew, when))
    aggregate = _vector(path, "aggregate_resources", n.aggregate_resources)
    min_unit = _vector(path, "min_unit", n.min_unit)
    for name, unit in min_unit.items():
        where = f"{path}.min_unit[{name!r}]"
        if unit <= 0:
            raise InvalidRollup(f"{where}: {_show(n.min_unit[name])} is not positive")
        if name not in aggregate:
            raise InvalidRollup(f"{where}: {name!r} is not in aggregate_resources")
        if unit > aggregate[name]:
            raise InvalidRollup(
                f"{where}: {_show(n.min_unit[name])} is larger than the aggregate "
                f"{_show(n.aggregate_resources[name])}"
            )
    if len(n.group.encode()) > MAX_GROUP_BYTES:
        raise InvalidRollup(
            f"{path}.group: {_show(n.group)} is longer than {MAX_GROUP_BYTES} bytes"
        )
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


def rollup_from_wire(
    rollup: capacity_pb2.ClusterCapacityNeeds, max_needs: int = MAX_NEEDS_PER_ROLLUP
) -> list[Need]:
    """Every need of a roll-up, or InvalidRollup (naming the field and value) for the whole."""
    check_rollup(rollup, max_needs)
    return needs_from_wire(rollup, 0, len(rollup.needs))


def check_rollup(rollup: capacity_pb2.ClusterCapacityNeeds, max_needs: int) -> None:
    """The roll-up's own fields (its cluster id, how many needs), or InvalidRollup."""
    if not rollup.cluster_id:
        raise InvalidRollup("cluster_id: roll-up without cluster_id")
    _name(
        "cluster_id",
        "cluster id (a DNS-1123 subdomain)",
        rollup.cluster_id,
        k8snames.dns1123_subdomain_error(rollup.cluster_id),
    )
    if len(rollup.needs) > max_needs:
        raise InvalidRollup(f"needs: {len(rollup.needs)} needs exceed the cap of {max_needs}")


def needs_from_wire(rollup: capacity_pb2.ClusterCapacityNeeds, start: int, stop: int) -> list[Need]:
    """Needs [start, stop) of a roll-up whose own fields passed `check_rollup`, or
    InvalidRollup naming the need's index in the roll-up."""
    cluster, arrival, wire = rollup.cluster_id, rollup.timestamp_unix_nanos, rollup.needs
    return [
        need_from_wire(cluster, wire[i], arrival, f"needs[{i}]")
        for i in range(start, min(stop, len(wire)))
    ]


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
