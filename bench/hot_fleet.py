"""The `bench-hot` fleet: the reference's co-located hot-path shape, built for the engine bench.

18,000 machines in one zone: 5,000 Configured (per cluster 175 small machines
for tiny pods, 30 for services, 30 memcache hosts and 15 GPU hosts), 1,000
Idle and 12,000 Speculative slots. Each machine type has 12 racks; the gang
types are laid out in blocks of 8 machines per rack. Demand per cluster: two
plain needs (tiny pods at 100 a machine, services at 10 a machine) sized to
the cluster's bound machines, 95 memcache gangs of four whole machines and 32
GPU gangs of five whole machines, each gang `Same` on the rack label. 2,580
needs, 2,540 of them co-located.
"""

from __future__ import annotations

import random

from bigfleet import penalty
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import INSTANCE_TYPE_KEY, CapacityType, Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.profile import Operator, Profile, Requirement

S = MachineState
RACK_KEY = "topology.bigfleet/rack"
RACKS = 12
RACK_BLOCK = 8  # gang machine types sit in racks in blocks of this many
ZONE = "zone-0"
CLUSTERS = 20
CONFIGURED, IDLE, SPECULATIVE = 5_000, 1_000, 12_000
MACHINES = CONFIGURED + IDLE + SPECULATIVE


# One machine type per role: (instance type, cpu milli, memory bytes*1000, gpus milli, price).
TINY = ("m6i.2xlarge", 8_000, 32 * 2**30 * 1000, 0, 0.38)
SERVICE = ("m6i.4xlarge", 16_000, 64 * 2**30 * 1000, 0, 0.77)
MEMCACHE = ("r6i.4xlarge", 16_000, 128 * 2**30 * 1000, 0, 1.01)
GPU = ("p4d.24xlarge", 96_000, 1152 * 2**30 * 1000, 8_000, 32.77)
TYPES = (TINY, SERVICE, MEMCACHE, GPU)
# Configured machines of each type per cluster (250 a cluster, 5,000 in all).
BOUND_PER_CLUSTER = {TINY: 175, SERVICE: 30, MEMCACHE: 30, GPU: 15}
# How the Idle machines and Speculative slots divide among the types.
FREE_SHARE = {TINY: 0.05, SERVICE: 0.05, MEMCACHE: 0.6, GPU: 0.3}
TINY_PER_MACHINE, SERVICE_PER_MACHINE = 100, 10
MEMCACHE_GANGS, MEMCACHE_GANG = 95, 4
GPU_GANGS, GPU_GANG = 32, 5
PRIORITIES = (100, 1_000, 100_000)


def _resources(kind: tuple[str, int, int, int, float]) -> dict[str, int]:
    _, cpu, memory, gpu, _ = kind
    out = {"cpu": cpu, "memory": memory}
    if gpu:
        out["nvidia.com/gpu"] = gpu
    return out


def cluster_name(c: int) -> str:
    return f"cluster-{c:03d}"


class _Racks:
    """Hands out rack labels: gang types in blocks of RACK_BLOCK, the others at random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.placed: dict[str, int] = {}

    def next(self, kind: tuple[str, int, int, int, float]) -> str:
        name = kind[0]
        if kind in (MEMCACHE, GPU):
            n = self.placed.get(name, 0)
            self.placed[name] = n + 1
            rack = (n // RACK_BLOCK) % RACKS
        else:
            rack = self.rng.randrange(RACKS)
        return f"{name}-r{rack}"


def _free_kinds(count: int) -> list[tuple[str, int, int, int, float]]:
    """`count` machine types in the FREE_SHARE proportions, interleaved."""
    kinds: list[tuple[str, int, int, int, float]] = []
    for kind, share in FREE_SHARE.items():
        kinds += [kind] * round(count * share)
    kinds = kinds[:count] + [MEMCACHE] * (count - len(kinds))
    return kinds


def build_inventory(rng: random.Random) -> Inventory:
    inv = Inventory()
    racks = _Racks(rng)
    placed: list[tuple[MachineState, str, tuple[str, int, int, int, float]]] = []
    for c in range(CLUSTERS):
        for kind, count in BOUND_PER_CLUSTER.items():
            placed += [(S.CONFIGURED, cluster_name(c), kind)] * count
    placed += [(S.IDLE, "", kind) for kind in _free_kinds(IDLE)]
    placed += [(S.SPECULATIVE, "", kind) for kind in _free_kinds(SPECULATIVE)]
    for i, (state, cluster, kind) in enumerate(placed):
        inv.upsert(
            Machine(
                id=f"m-{i:07d}",
                state=state,
                host="" if state == S.SPECULATIVE else f"bench/h-{i}",
                cluster=cluster,
                instance_type=kind[0],
                zone=ZONE,
                capacity_type=CapacityType.ON_DEMAND,
                resources=_resources(kind),
                labels={RACK_KEY: racks.next(kind)},
                price_per_hour=kind[4],
                interruption_probability=0.05 if state == S.SPECULATIVE else 0.0,
                assigned_priority=rng.choice(PRIORITIES) if cluster else 0,
            ),
            now=0.0,
        )
    return inv


def _profile(kind: tuple[str, int, int, int, float], same: bool, rng: random.Random) -> Profile:
    requirements = [Requirement(INSTANCE_TYPE_KEY, Operator.IN, (kind[0],))]
    if same:
        requirements.append(Requirement(RACK_KEY, Operator.SAME))
    return Profile(
        tuple(requirements),
        (),
        rng.choice(PRIORITIES),
        penalty.bucket_for_dollars(rng.choice((1, 64, 8000))),
        penalty.PINNED,
    )


def _plain(
    cluster: str,
    kind: tuple[str, int, int, int, float],
    per_machine: int,
    rng: random.Random,
    arrival: int,
) -> Need:
    whole = _resources(kind)
    unit = {k: v // per_machine for k, v in whole.items()}
    pods = BOUND_PER_CLUSTER[kind] * per_machine
    return Need(
        cluster=cluster,
        profile=_profile(kind, False, rng),
        aggregate={k: v * pods for k, v in unit.items()},
        min_unit=unit,
        arrival=arrival,
    )


def _gang(
    cluster: str,
    kind: tuple[str, int, int, int, float],
    size: int,
    name: str,
    rng: random.Random,
    arrival: int,
) -> Need:
    unit = _resources(kind)
    return Need(
        cluster=cluster,
        profile=_profile(kind, True, rng),
        aggregate={k: v * size for k, v in unit.items()},
        min_unit=unit,
        group=name,
        arrival=arrival,
    )


def build_demand(rng: random.Random) -> NeedsTable:
    table = NeedsTable()
    for c in range(CLUSTERS):
        cluster = cluster_name(c)
        rows = [
            _plain(cluster, TINY, TINY_PER_MACHINE, rng, 0),
            _plain(cluster, SERVICE, SERVICE_PER_MACHINE, rng, 1),
        ]
        rows += [
            _gang(cluster, MEMCACHE, MEMCACHE_GANG, f"{cluster}-memcache-{g}", rng, 2 + g)
            for g in range(MEMCACHE_GANGS)
        ]
        rows += [
            _gang(cluster, GPU, GPU_GANG, f"{cluster}-gpu-{g}", rng, 2 + MEMCACHE_GANGS + g)
            for g in range(GPU_GANGS)
        ]
        table.replace(cluster, rows)
    return table
