"""Small constructors for engine tests, following engine.md §7's common fixture."""

from __future__ import annotations

from bigfleet import penalty
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import INSTANCE_TYPE_KEY, CapacityType, Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.profile import Operator, Profile, Requirement, Spread

GPU = "nvidia.com/gpu"
A3 = "a3-highgpu-8g"
B8192 = penalty.bucket_for_dollars(8000)
S = MachineState

# A small two-type, three-rack fleet for the hypothesis properties.
CLUSTERS = ("c1", "c2", "c3")
TYPES = ("t-small", "t-big")
RACKS = ("r1", "r2", "r3")
SIZE = {"t-small": {"cpu": 4000}, "t-big": {"cpu": 16000}}


def gpu(units: int) -> dict[str, int]:
    """`units` machines' worth of GPUs, in milli-units (8 GPUs a machine)."""
    return {GPU: 8 * units * 1000}


def machine(
    machine_id: str,
    state: MachineState,
    *,
    cluster: str = "",
    price: float = 0.0,
    p: float = 0.0,
    capacity_type: CapacityType = CapacityType.BARE_METAL,
    alloc: dict[str, int] | None = None,
    instance_type: str = A3,
    labels: dict[str, str] | None = None,
    priority: int = 0,
    interruption: float = 0.0,
    reclamation: float = 0.0,
    group: str = "",
    fingerprint: str = "",
) -> Machine:
    hostless = state in (S.SPECULATIVE, S.CREATING)
    return Machine(
        id=machine_id,
        state=state,
        host="" if hostless else f"fake/{machine_id}",
        cluster=cluster,
        instance_type=instance_type,
        zone="us-east-1a",
        capacity_type=capacity_type,
        resources=alloc if alloc is not None else gpu(1),
        labels=labels or {},
        price_per_hour=price,
        interruption_probability=p,
        assigned_priority=priority,
        assigned_interruption_penalty=interruption,
        assigned_reclamation_penalty=reclamation,
        assigned_group=group,
        assigned_need_fingerprint=fingerprint,
    )


def profile(
    priority: int,
    *,
    interruption: int = B8192,
    reclamation: int = penalty.PINNED,
    instance_type: str | tuple[str, ...] = A3,
    same: str | None = None,
    spread: Spread | None = None,
) -> Profile:
    """`instance_type`: one type, several (any of them) or () for no pin at all."""
    types = (instance_type,) if isinstance(instance_type, str) else instance_type
    requirements = [Requirement(INSTANCE_TYPE_KEY, Operator.IN, types)] if types else []
    if same:
        requirements.append(Requirement(same, Operator.SAME))
    return Profile(
        tuple(requirements), (spread,) if spread else (), priority, interruption, reclamation
    )


def need(
    cluster: str,
    priority: int,
    units: int,
    *,
    aggregate: dict[str, int] | None = None,
    min_unit: dict[str, int] | None = None,
    arrival: int = 0,
    group: str = "",
    **profile_args: object,
) -> Need:
    return Need(
        cluster=cluster,
        profile=profile(priority, **profile_args),  # type: ignore[arg-type]
        aggregate=aggregate if aggregate is not None else gpu(units),
        min_unit=min_unit if min_unit is not None else gpu(1),
        arrival=arrival,
        group=group,
    )


def inventory(*machines: Machine, now: float = 0.0) -> Inventory:
    inv = Inventory()
    for m in machines:
        inv.upsert(m, now)
    return inv


def table(*needs: Need) -> NeedsTable:
    t = NeedsTable()
    by_cluster: dict[str, list[Need]] = {}
    for n in needs:
        by_cluster.setdefault(n.cluster, []).append(n)
    for cluster, rows in by_cluster.items():
        t.replace(cluster, rows)
    return t


def kinds(actions: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(a.kind.value, a.machine_id) for a in actions]
