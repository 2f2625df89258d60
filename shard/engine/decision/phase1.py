"""Phase 1: assign supply to demand.

First every need is credited with the supply already bound to its cluster
(Configured, Configuring, and its own in-flight Creating machines), highest
priority first. Needs with a residual then acquire, highest precedence first:
Idle machines (price asc) strictly before Speculative slots (effective cost
asc). Co-location (Same) needs pick one topology domain in the credit pass
and stay inside it; strict spread balances across domains.

This is the deterministic sequential equivalent of the reference's optimistic
concurrent Phase 1 (engine.md §2.3): needs are processed in precedence order,
so a later need never outranks an earlier claim and nothing is displaced.

Given the previous cycle's memo, the credit pass replays each need's step
whose inputs did not change instead of computing it again (see `replay`);
acquisition is always computed. A replayed cluster's claims are stored only
once something reads its bound machines, or asks the result (ADR 0030).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.decision.actions import Action, ActionKind, Unsatisfied
from bigfleet.shard.engine.decision.colocation import (
    Attribution,
    Bucket,
    CreditGroup,
    CreditIndex,
    DomainCoverage,
    Group,
    SameIndex,
    attribution,
    best_domains,
    choose_same_bucket,
    credit_contenders,
    same_bucket_rank,
)
from bigfleet.shard.engine.decision.cost import effective_cost
from bigfleet.shard.engine.decision.replay import (
    AcquirableTotals,
    ClusterSteps,
    GroupingKey,
    Lane,
    PerValue,
    PoolKey,
    Ranking,
    Reservation,
    ReservationLog,
    Step,
    need_key,
)
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import Machine, MachineState
from bigfleet.shard.engine.needs import Need, credit, fits
from bigfleet.shard.engine.profile import Spread

S = MachineState


@dataclass(frozen=True, slots=True)
class Phase1Result:
    actions: list[Action]
    unsatisfied: list[Unsatisfied]
    claimed: Mapping[str, Need]  # machine id -> need: the engine's only supply attribution
    acquired: dict[int, int]  # demand index -> Idle/Speculative machines claimed
    # Per demand index, for verdicts: what is still missing, the machines credited
    # (bound and acquired), and for co-location needs the chosen domain and whether it
    # can hold the whole need.
    remaining: Sequence[rv.Vector] = field(default_factory=list)
    credited: Sequence[Sequence[str]] = field(default_factory=list)
    domains: dict[int, str] = field(default_factory=dict)
    satisfiable: dict[int, bool] = field(default_factory=dict)
    # Strict-spread needs whose acquisition stopped at max skew with matching supply left.
    skew_bound: set[int] = field(default_factory=set)
    # Per cluster, how many of its Configured machines Phase 1 claimed (only credit does):
    # where that is all of them, Phase 3 has nothing to reclaim there and need not look.
    configured_claims: dict[str, int] = field(default_factory=dict)
    # Clusters whose needs credited exactly the machines they credited last cycle
    # (acquiring claims only Idle and Speculative ones): Phase 3 may keep what it
    # found there while their bound machines stand.
    same_claims: set[str] = field(default_factory=set)


_NO_MACHINES: list[Machine] = []
BoundPoolKey = tuple[str, MachineState, tuple[str, ...], str]


class _Claims(Mapping[str, Need]):
    """Machine id -> need, read through the demand list instead of copied into a dict.

    The claims of clusters whose bound pools nothing read during the phase (`unread`:
    demand indexes of their replayed steps) are stored here only when asked about: a
    machine of such a cluster, found through the inventory while it is as the phase
    saw it, stores its cluster's; anything else (iterating, or a changed inventory)
    stores them all."""

    def __init__(
        self,
        by_index: dict[str, int],
        demand: list[Need],
        unread: dict[str, list[int]],
        credited: Sequence[Sequence[str]],
        inventory: Inventory,
    ) -> None:
        self._by_index = by_index
        self._demand = demand
        self._unread = unread
        self._credited = credited
        self._inventory = inventory
        self._version = inventory.version

    def _store(self, cluster: str) -> None:
        _store_claims(self._by_index, self._credited, self._unread.pop(cluster, ()))

    def _store_all(self) -> None:
        for cluster in list(self._unread):
            self._store(cluster)

    def _holds(self, machine_id: str) -> bool:
        if machine_id in self._by_index:
            return True
        if not self._unread:
            return False
        if self._inventory.version != self._version:
            self._store_all()
            return machine_id in self._by_index
        m = self._inventory.get(machine_id)
        if m is None or m.state in (S.IDLE, S.SPECULATIVE):
            return False  # unread claims are credits: bound machines only
        if m.state in (S.CONFIGURED, S.CONFIGURING):
            if m.cluster not in self._unread:
                return False
            self._store(m.cluster)
        else:  # in flight: credited by attribution, whatever cluster it names
            self._store_all()
        return machine_id in self._by_index

    def __getitem__(self, machine_id: str) -> Need:
        if not self._holds(machine_id):
            raise KeyError(machine_id)
        return self._demand[self._by_index[machine_id]]

    def __iter__(self) -> Iterator[str]:
        self._store_all()
        return iter(self._by_index)

    def __len__(self) -> int:
        self._store_all()
        return len(self._by_index)

    def __contains__(self, machine_id: object) -> bool:
        return isinstance(machine_id, str) and self._holds(machine_id)

    def keys(self) -> KeysView[str]:
        return KeysView(self)


@dataclass(slots=True)
class Phase1Memo:
    """What a cycle's Phase 1 keeps for the next, so it redoes only what changed
    (see `replay`)."""

    clusters: dict[str, ClusterSteps] = field(default_factory=dict)
    # Acquirable pools in candidate order and their Same groupings (sorting and
    # grouping are not free), each with the inventory stamp it was built at.
    pools: dict[PoolKey, tuple[object, list[Machine]]] = field(default_factory=dict)
    same_indexes: dict[tuple[PoolKey, str], tuple[object, SameIndex]] = field(default_factory=dict)
    # A cluster's bound pools grouped for co-location seeding, by (cluster, state, pinned
    # types, Same key), each with the cluster's bound stamp it was built at.
    credit_indexes: dict[BoundPoolKey, tuple[object, CreditIndex]] = field(default_factory=dict)
    # Clusters with needs of each attribution that in-flight machines carry.
    creating_owners: dict[Attribution, set[str]] = field(default_factory=dict)
    replayed: int = 0  # needs replayed in the last cycle, for tests and benchmarks
    # The best domains each co-location need was ranked against when it was last
    # seeded, by `candidates_key`: replays keep them (verdicts read them, no decision does).
    candidates: dict[tuple[object, ...], tuple[DomainCoverage, ...]] = field(default_factory=dict)
    rank_domains: bool = True  # keep `candidates` (an engine without verdicts does not)
    # The stamp pairs `_Phase1._stamp` handed out in the last run.
    stamps: dict[tuple[object, ...], tuple[Any, ...]] = field(default_factory=dict)
    # One object per totals key (`_Phase1._totals_key`) across runs: steps carry theirs, and
    # an identical key is found without comparing its strings.
    totals_keys: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)


class _Phase1:
    def __init__(self, inventory: Inventory, demand: list[Need], memo: Phase1Memo) -> None:
        self.inv = inventory
        self.demand = demand
        self.memo = memo
        # A replayed need's credited machines are its step's tuple, shared; a need
        # credited afresh gets its own list at its first claim.
        self.credited: list[Sequence[str]] = [()] * len(demand)
        self.reservations = ReservationLog()
        self._reserved_now: list[Reservation] = []  # by the need being credited
        self._skipped_now: list[str] = []  # taken machines it passed over while reserving
        # (cluster, pinned types, seeds) -> ((bound stamp, ()), acquirable stamp): any
        # tuple, so that compiled code hands out the very objects (see ADR 0026).
        self._stamps: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self._acquirable_totals: dict[tuple[object, ...], PerValue] = {}
        # Per (grouping, requirements, unit): its groups the need admits, per value, and
        # the totals at the last reservations view they were worked out for.
        self._eligible_groups: dict[tuple[object, ...], dict[str, list[Group]]] = {}
        self._last_totals: dict[
            tuple[object, ...], tuple[frozenset[tuple[tuple[str, int], int]], PerValue]
        ] = {}
        # Per (cluster, profile, unit): how many of its lane's moved machines were read,
        # and their domain values (see _credit_values).
        self._credit_values_of: dict[tuple[object, ...], tuple[int, set[str]]] = {}
        # How the last seeding chose its domain: the totals it ranked against, the rank.
        self._ranked_now: tuple[AcquirableTotals, tuple[object, ...]] | None = None
        self._groupings_of: dict[tuple[str, bool], tuple[GroupingKey, ...]] = {}
        self._totals_of: dict[tuple[object, ...], tuple[int, AcquirableTotals]] = {}
        self._pending: dict[tuple[PoolKey, str], list[Reservation]] = defaultdict(list)
        # Per grouping rebuilt this phase: the stamp of the one it replaced and the domain
        # values whose machines differ between the two (see _domain_supply_stands).
        self._same_moved: dict[tuple[PoolKey, str], tuple[object, set[str]]] = {}
        # Never changed in place (each credit makes a new vector), so shared, not copied.
        self.remaining = [n.aggregate for n in demand]
        # Needs still short after the credit pass, in demand order: only they acquire.
        self._short: list[int] = []
        self._same_claims: set[str] = set()  # see Phase1Result.same_claims
        self.claimed: dict[str, int] = {}
        # Per cluster whose bound pools nothing has read yet this phase, its replayed
        # steps (demand indexes), whose claims are not stored in `claimed` until something
        # reads those pools (_creditable_pools) or the result is asked (_Claims). A cluster
        # whose needs all replay is never read: storing its claims was most of a large
        # shard's replay. Only its own needs read its bound pools (in-flight machines that
        # several clusters' needs credit make those clusters contested: never replayed).
        self._unread: dict[str, list[int]] = {}
        self._read: set[str] = set()
        self.consumed: set[str] = set()  # acquirables reserved by Same seeding
        self.domain: dict[int, str] = {}
        self.satisfiable: dict[int, bool] = {}
        self.skew_bound: set[int] = set()
        self.configured_claims: dict[str, int] = defaultdict(int)
        self.acquired: dict[int, int] = defaultdict(int)
        self.actions: list[Action] = []
        self._pools: dict[PoolKey, list[Machine]] = {}
        self._same_indexes: dict[tuple[PoolKey, str], SameIndex] = {}
        # Cursors and credit indexes are keyed by the identity of pool lists (and of a
        # grouping's or credit index's per-value lists), so every such list stays
        # referenced (here, in _pools, _creating, _same_indexes or _credit_indexes) for
        # the whole phase: an identity is never reused by another list while it runs.
        self._bound_pools: dict[tuple[str, MachineState, tuple[str, ...]], list[Machine]] = {}
        self._cursor: dict[int, int] = {}
        self._credit_indexes: dict[tuple[int, str], CreditIndex] = {}
        # Per cluster, its pools in credit indexes: its bound ones, where only its own needs
        # claim, and (by machine) in-flight ones, which needs of several clusters may.
        self._grouped: dict[str, list[CreditIndex]] = {}
        self._credit_groups_of: dict[str, list[tuple[CreditGroup, Attribution]]] = {}
        # In-flight Creating machines by attribution (assigned group, need fingerprint).
        self._creating: dict[Attribution, list[Machine]] = {}

    # -- supply views -------------------------------------------------------------------------

    def _creditable_pools(self, need: Need) -> list[list[Machine]]:
        """Bound supply in keep order: Configured, Configuring, then own in-flight Creating."""
        if need.cluster not in self._read:
            self._read_cluster(need.cluster)
        types = need.profile.pinned_types
        pools = []
        for state in (S.CONFIGURED, S.CONFIGURING):
            key = (need.cluster, state, types)
            pool = self._bound_pools.get(key)
            if pool is None:  # one list per key for the whole phase: see _unclaimed
                pool = self._bound_pools[key] = (
                    self.inv.keep_order_of_types(need.cluster, state, types)
                    if types
                    else self.inv.keep_order(need.cluster, state)
                )
            pools.append(pool)
        pools.append(self._creating.get((need.group, need.fingerprint), _NO_MACHINES))
        return pools

    @staticmethod
    def _pool_key(need: Need, state: MachineState) -> PoolKey:
        bucket = need.profile.interruption_bucket if state == S.SPECULATIVE else -1
        return (state, need.profile.pinned_types, bucket)

    def _pool(self, key: PoolKey) -> list[Machine]:
        """Idle by price, Speculative by effective cost for this need's interruption bucket."""
        pool = self._pools.get(key)
        if pool is None:
            state, types, bucket = key
            stamp = self.inv.acquirable_stamp(state, types)
            kept = self.memo.pools.get(key)
            if kept is not None and kept[0] == stamp:
                pool = kept[1]
            else:
                pool = (
                    self.inv.in_state_of_types(state, types) if types else self.inv.in_state(state)
                )
                if state == S.SPECULATIVE:
                    pool = sorted(pool, key=lambda m: (effective_cost(m, bucket), m.id))
                self.memo.pools[key] = (stamp, pool)
            self._pools[key] = pool
        return pool

    def _unclaimed(self, pool: list[Machine]) -> Iterator[Machine]:
        """The pool from its first unclaimed machine; the claimed head is skipped for good."""
        for at in range(self._past_claimed_head(pool), len(pool)):  # a slice copied the tail
            m = pool[at]
            if m.id not in self.claimed:
                yield m

    def _past_claimed_head(self, machines: list[Machine]) -> int:
        """Where the list's unclaimed part starts. Claims only grow within a phase, so its
        claimed head is skipped once for good (the list is keyed by identity, so it must
        stay referenced for the whole phase: see `__init__`)."""
        start = self._cursor.get(id(machines), 0)
        while start < len(machines) and machines[start].id in self.claimed:
            start += 1
        self._cursor[id(machines)] = start
        return start

    _eligible = staticmethod(fits)

    # -- claiming -----------------------------------------------------------------------------

    def _credit(self, index: int, m: Machine) -> None:
        self._claim(index, m.id)
        if m.state == S.CONFIGURED:
            self.configured_claims[self.demand[index].cluster] += 1
        self.remaining[index] = rv.sub(self.remaining[index], credit(self.demand[index], m))

    def _claim(self, index: int, machine_id: str) -> None:
        self.claimed[machine_id] = index
        credited = self.credited[index]
        if isinstance(credited, list):
            credited.append(machine_id)
        else:
            self.credited[index] = [*credited, machine_id]
        self._count_claim(self.demand[index].cluster, machine_id)

    def _count_claim(self, cluster: str, machine_id: str) -> None:
        for credit_index in self._grouped.get(cluster, ()):
            entry = credit_index.group_of.get(machine_id)
            if entry is not None:
                entry[0].count_claim(entry[1])
        for group, own in self._credit_groups_of.get(machine_id, ()):
            group.count_claim(own)

    def _reserve(self, r: Reservation) -> None:
        self.consumed.add(r.machine_id)
        index = self._same_indexes.get((r.pool, r.key))
        if index is None:
            self._pending[(r.pool, r.key)].append(r)  # counted when the index is built
        else:
            index.by_value[r.value][r.group].reserved += 1
        self.reservations.add(r)
        self._reserved_now.append(r)

    def _credit_index(
        self, pool: list[Machine], key: str, kept_as: BoundPoolKey | None, stamp: object
    ) -> CreditIndex:
        """The pool grouped by `key`, counting this cycle's claims. A bound pool's grouping
        (`kept_as`) is kept across cycles while its cluster's bound stamp holds."""
        index = self._credit_indexes.get((id(pool), key))
        if index is None:
            kept = self.memo.credit_indexes.get(kept_as) if kept_as is not None else None
            if kept is not None and kept[0] == stamp:
                index = kept[1]
                index.clear_claims()
            else:
                index = CreditIndex(pool, key)
                if kept_as is not None:
                    self.memo.credit_indexes[kept_as] = (stamp, index)
            self._credit_indexes[(id(pool), key)] = index
            claimed = self.claimed
            if kept_as is not None:
                self._grouped.setdefault(kept_as[0], []).append(index)
            else:
                groups_of = self._credit_groups_of
                for machine_id, entry in index.group_of.items():
                    groups_of.setdefault(machine_id, []).append(entry)
            for machine_id, entry in index.group_of.items():  # claimed earlier this cycle
                if machine_id in claimed:
                    entry[0].count_claim(entry[1])
        return index

    def _acquire(self, index: int, m: Machine) -> None:
        need = self.demand[index]
        self._credit(index, m)
        self.acquired[index] += 1
        idle = m.state == S.IDLE
        self.actions.append(
            Action(
                kind=ActionKind.BOOTSTRAP if idle else ActionKind.PROVISION,
                machine_id=m.id,
                cluster=need.cluster,
                reason="phase1.idle" if idle else "phase1.speculative",
                need=need,
            )
        )

    # -- (a) credit pass ----------------------------------------------------------------------

    def credit_bound_supply(self) -> None:
        contested = self._contested_clusters()
        memo = self.memo
        lanes: dict[str, Lane] = {}
        replayed = 0
        order = [-need.priority for need in self.demand]
        for index in sorted(range(len(self.demand)), key=order.__getitem__):
            need = self.demand[index]
            lane = lanes.get(need.cluster)
            if lane is None:
                previous = None if need.cluster in contested else memo.clusters.get(need.cluster)
                lane = lanes[need.cluster] = Lane(previous)
            stamp, acquirable = self._stamp(need)
            types = need.profile.pinned_types
            step = lane.match(need)
            # A co-location step's kept credit side as it is now, when it can be had from
            # last cycle's: seeding the need again then starts from there.
            credit_side: dict[str, Bucket] | None = None
            if step is not None and (step.stamp is stamp or step.stamp == stamp):
                again, credit_side = self._step_again(need, step, lane, acquirable)
                if again is not None:
                    self._replay(index, again)
                    lane.steps.append(again)
                    if again.short:
                        self._short.append(index)
                    replayed += 1
                    continue
            # Last cycle's step for this need, or for the one it replaces in place.
            before = step or lane.take_in_place(need)
            seen = self.reservations.seen(self._groupings(need))
            self._reserved_now, self._skipped_now = [], []
            configured_before = self.configured_claims[need.cluster]
            kept_side, ranked = None, None
            if need.profile.same is not None:
                # Kept to be ranked again, or seeded again from, in a later cycle.
                kept_side = self._seed_same(index, need, credit_side)
                if index in self.domain and rv.is_zero(self.remaining[index]):
                    # Covered by credit: ranked again against moved supply, only
                    # against the racks that could still outrank its own.
                    assert self._ranked_now is not None
                    totals, rank = self._ranked_now
                    contenders = credit_contenders(kept_side, self.domain[index], need.aggregate)
                    ranked = Ranking(totals, rank, contenders)
            else:
                self._credit_plain(index, need)
            lane.recomputed(before, types, self.credited[index])
            configured = self.configured_claims[need.cluster] - configured_before
            made = Step(
                need_key(need),
                need,
                types,
                stamp,
                acquirable,
                tuple(self.credited[index]),
                self.remaining[index],
                self.domain.get(index),
                self.satisfiable.get(index),
                tuple(self._reserved_now),
                seen,
                tuple(self._skipped_now),
                kept_side,
                ranked,
                configured,
                self._totals_key(need) if need.profile.same is not None else None,
            )
            lane.steps.append(made)
            if made.short:
                self._short.append(index)
        self._short.sort()  # demand order
        self._same_claims = {c for c, lane in lanes.items() if lane.claims_as_before()}
        memo.stamps = self._stamps
        memo.clusters = {c: ClusterSteps(lane.steps) for c, lane in lanes.items()}
        memo.replayed = replayed
        if any(key[0] not in lanes for key in memo.credit_indexes):  # clusters gone
            memo.credit_indexes = {k: v for k, v in memo.credit_indexes.items() if k[0] in lanes}

    def _step_again(
        self, need: Need, step: Step, lane: Lane, acquirable: Any
    ) -> tuple[Step | None, dict[str, Bucket] | None]:
        """Last cycle's step of the need, whose bound machines' stamp stands, as it would
        be computed now (None when it must be computed), and its kept credit side as it
        is now, if it can be had from the step's."""
        types = need.profile.pinned_types
        if lane.untouched(types):
            side = step.credit_side  # no claim on its machines moved
            same_supply = step.acquirable is acquirable or step.acquirable == acquirable
            if self._reserving_stands(step):
                if not same_supply:
                    if self._short_again(need, step, side, acquirable):
                        return self._again_now(need, step, acquirable, None, side), side
                elif self.reservations.as_seen(step):
                    if step.source is need:
                        return step, side
                    return step.again(need, step.acquirable, step.seen, step.ranked, side), side
                elif self._short_choice_stands(need, step, side):
                    return self._again_now(need, step, acquirable, None, side), side
            ranked = self._same_choice_stands(need, step, set())
            if ranked is not None:
                return self._again_now(need, step, acquirable, ranked, side), side
            return None, side
        if step.credit_side is None:
            return None, None
        # Earlier needs of the cluster claim other machines of its types than last cycle.
        # None in its domain: ranked again, it may be replayed.
        moved = self._credit_values(need, lane.moved)
        side = self._credit_side_now(need, step.credit_side, moved)
        if step.domain not in moved:
            if self._reserving_stands(step) and self._short_again(need, step, side, acquirable):
                return self._again_now(need, step, acquirable, None, side), side
            ranked = self._same_choice_stands(need, step, moved, side)
            if ranked is not None:
                return self._again_now(need, step, acquirable, ranked, side), side
        return None, side

    def _again_now(
        self,
        need: Need,
        step: Step,
        acquirable: object,
        ranked: Ranking | None,
        side: dict[str, Bucket] | None,
    ) -> Step:
        """The step replayed with what it reads of supply and reservations now."""
        log = self.reservations
        # The same need weighs the same groupings: when they look as they did, the
        # step's view stands (and no new one is kept).
        seen = step.seen if log.as_seen(step) else log.seen(self._groupings(need))
        return step.again(need, acquirable, seen, ranked, side)

    def _credit_plain(self, index: int, need: Need) -> None:
        """Credit in keep order, each pool's machines that another gang was given last:
        taking one would leave that gang short in its domain, to acquire a machine there
        while a machine this need left is reclaimed, again every cycle (ADR 0029)."""
        group = need.group
        for pool in self._creditable_pools(need):
            for held in (False, True):
                for m in self._unclaimed(pool):
                    if rv.is_zero(self.remaining[index]):
                        return
                    given = m.assigned_group
                    if (given != "" and given != group) == held and self._eligible(need, m):
                        self._credit(index, m)

    def _contested_clusters(self) -> set[str]:
        """Clusters never to replay this cycle; also groups in-flight machines by attribution.

        Needs of two clusters can share an attribution (a plain profile both
        use); when in-flight Creating machines carry it, the clusters compete
        for them in priority order, so neither's credit is its own business,
        this cycle or the first cycle after one of them left.
        """
        creating = self._creating
        for m in self.inv.in_state(S.CREATING):
            creating.setdefault(attribution(m), []).append(m)
        owners: dict[Attribution, set[str]] = {}  # of the attributions in flight only
        if creating:
            for need in self.demand:
                own: Attribution = (need.group, need.fingerprint)
                if own in creating:
                    owners.setdefault(own, set()).add(need.cluster)
        previous = self.memo.creating_owners
        self.memo.creating_owners = owners
        contested: set[str] = set()
        for own, clusters in self.memo.creating_owners.items():
            competing = clusters | previous.get(own, set())
            if len(competing) > 1:
                contested |= competing
        return contested

    def _stamp(self, need: Need) -> tuple[object, object]:
        """What the need's credit pass reads of the inventory, as comparable stamps:
        bound and in-flight machines, and (co-location) acquirable machines."""
        types = need.profile.pinned_types
        seeds = need.profile.same is not None and not need.parked
        key: tuple[object, ...] = (need.cluster, types, seeds)
        shared = self._stamps.get(key)
        if shared is None:  # many needs share a cluster and instance types
            bound = self.inv.bound_stamp(need.cluster, types)
            acquirable = (
                (
                    self.inv.acquirable_stamp(S.IDLE, types),
                    self.inv.acquirable_stamp(S.SPECULATIVE, types),
                )
                if seeds
                else None
            )
            # The pair most needs return (nothing in flight), made once.
            shared = ((bound, ()), acquirable)
            # Last cycle's pair when equal: steps made with it then compare by identity.
            kept = self.memo.stamps.get(key)
            if kept is not None and kept == shared:
                shared = kept
            self._stamps[key] = shared
        if not self._creating:  # nothing in flight: most cycles
            return shared
        creating = self._creating.get((need.group, need.fingerprint))
        if not creating:
            return shared
        return (shared[0][0], tuple(creating)), shared[1]

    def _groupings(self, need: Need) -> tuple[GroupingKey, ...]:
        """The acquirable groupings a need's Same seeding weighs (none for others)."""
        key = (need.profile.fingerprint, need.parked)  # the profile decides them
        found = self._groupings_of.get(key)
        if found is None:
            same = need.profile.same
            found = self._groupings_of[key] = (
                ()
                if same is None or need.parked
                else tuple((self._pool_key(need, s), same.key) for s in (S.IDLE, S.SPECULATIVE))
            )
        return found

    def _read_cluster(self, cluster: str) -> None:
        """The cluster's bound pools are about to be read: store its replayed claims so far,
        and from now on store them as they are made."""
        self._read.add(cluster)
        _store_claims(self.claimed, self.credited, self._unread.pop(cluster, ()))

    def _replay(self, index: int, step: Step) -> None:
        boxed: Any = index  # compiled code would box an int at every store or key use
        self.credited[index] = step.credited
        cluster = self.demand[index].cluster
        if cluster not in self._read:
            unread = self._unread.get(cluster)
            if unread is None:
                unread = self._unread[cluster] = []
            unread.append(boxed)
        else:
            claimed = self.claimed
            for machine_id in step.credited:
                claimed[machine_id] = boxed
        # A recomputed co-location need of this cluster grouped its bound machines. Only
        # its own cluster's steps can credit them: pools are per cluster, and clusters
        # sharing in-flight machines are contested, never replayed.
        if cluster in self._grouped:
            for machine_id in step.credited:
                self._count_claim(cluster, machine_id)
        self.remaining[index] = step.remaining
        # Its bound machines' stamp stood, so their states did too.
        self.configured_claims[cluster] += step.configured
        if step.domain is not None:
            self.domain[boxed] = step.domain
        if step.satisfiable is not None:
            self.satisfiable[boxed] = step.satisfiable
        for r in step.reservations:
            self._reserve(r)

    def _grouped_pools(self, need: Need) -> list[CreditIndex]:
        """The need's creditable pools grouped by its Same key; from now on its cluster's
        replayed claims are counted there too."""
        same = need.profile.same
        assert same is not None
        self._grouped.setdefault(need.cluster, [])
        types = need.profile.pinned_types
        bound = self.inv.bound_stamp(need.cluster, types)
        configured, configuring, creating = self._creditable_pools(need)
        return [
            self._credit_index(
                configured, same.key, (need.cluster, S.CONFIGURED, types, same.key), bound
            ),
            self._credit_index(
                configuring, same.key, (need.cluster, S.CONFIGURING, types, same.key), bound
            ),
            self._credit_index(creating, same.key, None, None),
        ]

    def _credit_side(self, need: Need, values: Iterable[str] | None = None) -> dict[str, Bucket]:
        """Per domain value (all, or these), what the need could credit from its
        cluster's bound machines."""
        buckets: dict[str, Bucket] = {}
        own_key = (need.group, need.fingerprint)
        for credit_index in self._grouped_pools(need):
            by_value = credit_index.by_value
            of_values: Iterable[tuple[str, list[CreditGroup]]] = (
                by_value.items() if values is None else [(v, by_value.get(v, [])) for v in values]
            )
            for value, credit_groups in of_values:
                for cg in credit_groups:
                    free = len(cg.machines) - cg.claimed
                    if free <= 0 or not self._eligible(need, cg.sample):
                        continue
                    alloc = cg.sample.alloc
                    b = buckets.get(value) or buckets.setdefault(value, Bucket(value))
                    b.count += free
                    rv.add_scaled(b.total, alloc, free)
                    rv.add_scaled(b.creditable_total, alloc, free)
                    own_free = cg.own_free(own_key)
                    if own_free > 0:
                        rv.add_scaled(b.own_total, alloc, own_free)
                    unheld_free = cg.unheld_free(own_key)
                    if unheld_free > 0:
                        rv.add_scaled(b.unheld_total, alloc, unheld_free)
        return buckets

    def _totals_key(self, need: Need) -> tuple[Any, ...]:
        """What a co-location need's acquirable totals read besides reservations: its
        profile (which decides its groupings and requirements), parking and unit."""
        key = (need.profile.fingerprint, need.parked, tuple(need.min_unit.items()))
        return self.memo.totals_keys.setdefault(key, key)

    def _acquirable_totals_of(
        self, need: Need, shared: tuple[Any, ...] | None = None
    ) -> AcquirableTotals:
        """What the need could acquire per domain value (Idle, Speculative, unreserved),
        one map per grouping it weighs; `shared` is its totals key, when known.

        Needs with the same requirements and unit see the same per-value totals
        while the grouping's reservations stand, so the totals are shared.
        """
        if shared is None:
            shared = self._totals_key(need)
        requirements, unit = need.profile.requirements, shared[2]
        found = self._totals_of.get(shared)
        if found is not None and found[0] == self.reservations.made:
            return found[1]
        out = []
        for grouping in self._groupings(need):
            view = self.reservations.view(grouping)
            key = (grouping, requirements, unit, view)
            per_value = self._acquirable_totals.get(key)
            if per_value is None:
                shape = (grouping, requirements, unit)
                per_value = self._acquirable_totals[key] = self._totals_at(
                    need, grouping, shape, view
                )
            out.append(per_value)
        totals = tuple(out)
        self._totals_of[shared] = (self.reservations.made, totals)
        return totals

    def _totals_at(
        self,
        need: Need,
        grouping: GroupingKey,
        shape: tuple[object, ...],
        view: frozenset[tuple[tuple[str, int], int]],
    ) -> PerValue:
        """Per domain value of a grouping, the unreserved machines the need's requirements
        and unit (with the grouping, its `shape`) admit, as of reservations `view`: worked
        out from the last view of the same shape for the values reserved in since."""
        eligible = self._eligible_groups.get(shape)
        if eligible is None:
            eligible = self._eligible_groups[shape] = {
                value: kept
                for value, groups in self._same_index(*grouping).by_value.items()
                if (kept := [g for g in groups if self._eligible(need, g.sample)])
            }
        last = self._last_totals.get(shape)
        if last is None:
            per_value: PerValue = {}
            values: Iterable[str] = eligible
        else:
            per_value = dict(last[1])
            values = {value for (value, _), _ in last[0] ^ view}
        for value in values:
            count, total = 0, dict[str, int]()
            # Seeding runs before any acquisition, so free machines are unclaimed here.
            for group in eligible.get(value, ()):
                free = len(group.machines) - group.reserved
                if free > 0:
                    count += free
                    rv.add_scaled(total, group.sample.alloc, free)
            if count:
                per_value[value] = (count, total)
            else:
                per_value.pop(value, None)
        self._last_totals[shape] = (view, per_value)
        return per_value

    def _with_acquirable(
        self, kept: dict[str, Bucket], totals: AcquirableTotals
    ) -> dict[str, Bucket]:
        """A kept credit side's buckets (copied) with what could be acquired added."""
        buckets = {value: b.copy() for value, b in kept.items()}
        self._add_acquirable_side(totals, buckets)
        return buckets

    def _add_acquirable_side(self, totals: AcquirableTotals, buckets: dict[str, Bucket]) -> None:
        for per_value in totals:
            for value, (count, total) in per_value.items():
                b = buckets.get(value) or buckets.setdefault(value, Bucket(value))
                b.count += count
                rv.add_scaled(b.total, total, 1)

    def _seed_same(
        self, index: int, need: Need, kept: dict[str, Bucket] | None = None
    ) -> dict[str, Bucket]:
        """Choose the need's domain, credit it there and reserve what it still lacks.

        Returns the credit side of its buckets, kept small, which a later cycle may
        rank again against changed acquirable supply instead of seeding afresh;
        given one that holds now (`kept`), it starts from there.
        """
        same = need.profile.same
        assert same is not None
        credit_indexes = self._grouped_pools(need)
        totals = self._acquirable_totals_of(need)
        if kept is None:
            buckets = self._credit_side(need)
            kept = {value: b.kept(need.aggregate) for value, b in buckets.items()}
            for value, b in buckets.items():
                # Ranked below by the same credit coverages, which the acquirable side
                # leaves as they are: computed once.
                b.coverages = kept[value].coverages
            self._add_acquirable_side(totals, buckets)
        else:
            buckets = self._with_acquirable(kept, totals)
        best = choose_same_bucket(buckets, need.aggregate)
        if self.memo.rank_domains:
            self.memo.candidates[candidates_key(need)] = best_domains(buckets, best, need.aggregate)
        if best is None:
            return kept
        self._ranked_now = (totals, same_bucket_rank(best, need.aggregate))
        self.domain[index] = best.value
        self.satisfiable[index] = rv.covers(best.total, need.aggregate)
        self._credit_in_domain(index, need, credit_indexes, best.value)
        reserve = self.remaining[index]
        for pool_key, key in self._groupings(need):
            for position, group in enumerate(
                self._same_index(pool_key, key).by_value.get(best.value, ())
            ):
                if not self._eligible(need, group.sample):
                    continue
                for m in group.machines:
                    if rv.is_zero(reserve):
                        return kept
                    if m.id in self.consumed:
                        self._skipped_now.append(m.id)
                    else:
                        self._reserve(Reservation(pool_key, key, best.value, position, m.id))
                        reserve = rv.sub(reserve, m.alloc)
        return kept

    def _credit_in_domain(
        self, index: int, need: Need, credit_indexes: list[CreditIndex], value: str
    ) -> None:
        """Credit the need in its chosen domain until it is covered: its own gang's
        machines first, then the rest, each in pool order and keep order within a pool.
        A walk that stops once covered, rather than sorting every member."""
        own_key: Attribution = (need.group, need.fingerprint)
        has_own = any(
            own_key in cg.by_own for ci in credit_indexes for cg in ci.by_value.get(value, ())
        )
        claimed = self.claimed
        for own_only in (True, False) if has_own else (False,):
            for credit_index in credit_indexes:
                group_of = credit_index.group_of
                machines = credit_index.in_order.get(value, _NO_MACHINES)  # held by its index
                for at in range(self._past_claimed_head(machines), len(machines)):
                    if rv.is_zero(self.remaining[index]):
                        return
                    m = machines[at]
                    if m.id in claimed:
                        continue
                    group, own = group_of[m.id]
                    if own_only and own != own_key:
                        continue
                    if self._eligible(need, group.sample):
                        self._credit(index, m)

    def _reserving_stands(self, step: Step) -> bool:
        """Reserving again would take the same machines: the ones the step took are
        free and the ones it passed over are taken, so its scan goes the same way."""
        if not step.reservations and not step.skipped:
            return True  # most steps: they reserved nothing
        consumed = self.consumed
        # Loops, not `all` over generators, which compiled code builds as objects.
        for r in step.reservations:
            if r.machine_id in consumed:
                return False
        for machine_id in step.skipped:  # noqa: SIM110
            if machine_id not in consumed:
                return False
        return True

    def _credit_values(self, need: Need, machines: list[str]) -> set[str]:
        """The domain values of those of the machines the (co-location) need could credit.

        Where its cluster's claims differ from last cycle's only on these machines,
        only these values' credit buckets differ too. The machines only grow during
        a cluster's pass, and its needs share profiles: the values are kept per
        profile and extended by the machines added since.
        """
        same = need.profile.same
        assert same is not None
        key = (need.cluster, need.profile.fingerprint, tuple(need.min_unit.items()))
        seen, values = self._credit_values_of.get(key, (0, set[str]()))
        if seen < len(machines):
            values = set(values)  # the kept set may be a step's, read later
            for machine_id in machines[seen:]:
                m = self.inv.get(machine_id)
                if m is not None and self._eligible(need, m):
                    value = m.attribute(same.key)
                    if value is not None:
                        values.add(value)
            self._credit_values_of[key] = (len(machines), values)
        return values

    def _credit_side_now(
        self, need: Need, kept: dict[str, Bucket], moved: set[str]
    ) -> dict[str, Bucket]:
        """A kept credit side with the buckets of the moved values built again."""
        if not moved:
            return kept
        side = dict(kept)
        fresh = self._credit_side(need, moved)
        for value in moved:
            b = fresh.get(value)
            if b is None:
                side.pop(value, None)
            else:
                side[value] = b.kept(need.aggregate)
        return side

    def _short_again(
        self, need: Need, step: Step, side: dict[str, Bucket] | None, acquirable: Any
    ) -> bool:
        """A co-location step that reserved, whose credit and reserving stand (its credit
        side is `side` now), may be replayed against today's acquirable supply (stamped
        `acquirable`) as long as no machine of its domain moved: its reserving goes the
        same way if it chooses the same domain."""
        return (
            step.short
            and self._domain_supply_stands(need, step, acquirable)
            and self._short_choice_stands(need, step, side)
        )

    def _domain_supply_stands(self, need: Need, step: Step, acquirable: Any) -> bool:
        """The acquirable machines of the step's domain, in each grouping it weighs, are
        the ones it was made with, in the same order (other domains' may differ)."""
        domain, before = step.domain, step.acquirable
        if domain is None or before is None or acquirable is None:
            return False
        for grouping, stamp, now in zip(self._groupings(need), before, acquirable, strict=True):
            pool_key, key = grouping
            if now == stamp:
                continue
            self._same_index(pool_key, key)  # rebuilt now, noting which values moved
            moved = self._same_moved.get((pool_key, key))
            # The grouping it replaced is the one the step was made with: a step takes a
            # new stamp only where its groupings are built. Checked all the same, as the
            # moved values mean nothing against another grouping.
            if moved is None or moved[0] != stamp or domain in moved[1]:
                return False
        return True

    def _short_choice_stands(self, need: Need, step: Step, side: dict[str, Bucket] | None) -> bool:
        """A co-location step that reserved (its credit fell short), whose credit and
        reserving stand, would choose the same domain against today's reservations
        and acquirable supply.

        Reservations made before it this cycle may differ from last cycle's, and
        acquirable supply may have moved, which changes what it could acquire per
        domain: ranked again from its credit side as it is now (`side`), the same
        choice means the same step.
        """
        if not step.short or side is None:
            return False
        buckets = self._with_acquirable(side, self._acquirable_totals_of(need, step.totals_key))
        best = choose_same_bucket(buckets, need.aggregate)
        if best is None:
            return step.domain is None
        return best.value == step.domain and rv.covers(best.total, need.aggregate) == (
            step.satisfiable
        )

    def _same_choice_stands(
        self,
        need: Need,
        step: Step,
        credit_moved: set[str],
        credit_side: dict[str, Bucket] | None = None,
    ) -> Ranking | None:
        """Ranked against today's supply, the step's domain would be chosen again: how
        it wins now, or None.

        Only for a step its credit fully covered: its outcome is then its domain
        and the credit there. Its credit side is last cycle's (`step.credit_side`)
        except at `credit_moved`, whose buckets `credit_side` carries as they are
        now; so ranking again decides whether it can be replayed.
        """
        if step.credit_side is None or step.short or step.domain is None or step.ranked is None:
            return None
        domain, ranked = step.domain, step.ranked
        contenders = ranked.contenders
        if credit_side is None:
            credit_side = step.credit_side
        elif credit_moved:  # other values' credit moved: they may contend now, or no longer
            contenders = credit_contenders(credit_side, domain, need.aggregate)
        totals = self._acquirable_totals_of(need, step.totals_key)
        if not _moved_at(ranked.against, totals, domain):
            # The domain's bucket is what it was, rank and all, and every other value's is
            # what it was when the domain beat it except where its acquirable totals or
            # its credit moved: only those can beat it now, and of those only contenders
            # (ranks never tie: the last key is the value).
            for value in contenders:
                if value in credit_moved or _moved_at(ranked.against, totals, value):
                    rival = self._bucket(credit_side, totals, value)
                    if same_bucket_rank(rival, need.aggregate) < ranked.rank:
                        return None
            return Ranking(totals, ranked.rank, contenders)
        # The domain's acquirable supply moved: it stays satisfiable (its credit covers the
        # need), and only contenders can outrank it.
        won = self._bucket(credit_side, totals, domain)
        if rv.covers(won.total, need.aggregate) != step.satisfiable:
            return None
        rank = same_bucket_rank(won, need.aggregate)
        for value in contenders:
            rival = self._bucket(credit_side, totals, value)
            if rival.count > 0 and same_bucket_rank(rival, need.aggregate) < rank:
                return None
        return Ranking(totals, rank, contenders)

    @staticmethod
    def _bucket(credit_side: dict[str, Bucket], totals: AcquirableTotals, value: str) -> Bucket:
        """One domain's bucket as seeding builds it: its credit side plus what it could acquire."""
        kept = credit_side.get(value)
        b = kept.copy() if kept is not None else Bucket(value)
        for per_value in totals:
            found = per_value.get(value)
            if found is not None:
                b.count += found[0]
                rv.add_scaled(b.total, found[1], 1)
        return b

    def _same_index(self, pool: PoolKey, key: str) -> SameIndex:
        index = self._same_indexes.get((pool, key))
        if index is None:
            stamp = self.inv.acquirable_stamp(pool[0], pool[1])
            kept = self.memo.same_indexes.get((pool, key))
            if kept is not None and kept[0] == stamp:
                index = kept[1]
                index.clear_reservations()
            else:
                index = SameIndex(self._pool(pool), key)
                self.memo.same_indexes[(pool, key)] = (stamp, index)
                if kept is not None:
                    self._same_moved[(pool, key)] = (kept[0], index.moved_since(kept[1]))
            self._same_indexes[(pool, key)] = index
            for r in self._pending.pop((pool, key), ()):
                index.by_value[r.value][r.group].reserved += 1
        return index

    # -- (b) acquisition ----------------------------------------------------------------------

    def acquire(self) -> None:
        residual = list(self._short)
        residual.sort(key=lambda i: tuple(-x for x in self.demand[i].profile.precedence))
        for index in residual:
            need = self.demand[index]
            if need.parked:
                continue
            for state in (S.IDLE, S.SPECULATIVE):
                if rv.is_zero(self.remaining[index]):
                    break
                pool_key = self._pool_key(need, state)
                pool = self._pool(pool_key)
                spread = need.profile.strict_spread
                if need.profile.same is not None:
                    self._take_same(index, need, pool_key)
                elif spread is not None:
                    self._take_spread(index, need, pool, spread)
                else:
                    self._take_basic(index, need, pool)

    def _take_basic(self, index: int, need: Need, pool: list[Machine]) -> None:
        for m in self._unclaimed(pool):
            if rv.is_zero(self.remaining[index]):
                return
            if self._eligible(need, m):
                self._acquire(index, m)

    def _take_same(self, index: int, need: Need, pool: PoolKey) -> None:
        domain = self.domain.get(index)
        same = need.profile.same
        if domain is None or same is None:
            return  # no domain had any supply when the need was seeded
        machines = self._same_index(pool, same.key).in_order.get(domain)
        if machines is None:
            return
        # Gangs of a domain acquire its machines in order (the list is held by its grouping).
        claimed = self.claimed
        for at in range(self._past_claimed_head(machines), len(machines)):
            if rv.is_zero(self.remaining[index]):
                return
            m = machines[at]
            if m.id not in claimed and self._eligible(need, m):
                self._acquire(index, m)

    def _take_spread(self, index: int, need: Need, pool: list[Machine], spread: Spread) -> None:
        by_value: dict[str, list[Machine]] = defaultdict(list)
        for m in self._unclaimed(pool):
            value = m.attribute(spread.topology_key)
            if value is not None and self._eligible(need, m):
                by_value[value].append(m)
        taken = dict.fromkeys(by_value, 0)
        heads = dict.fromkeys(by_value, 0)
        allowance = max(1, spread.max_skew) - 1
        while not rv.is_zero(self.remaining[index]):
            floor = min(taken.values(), default=0)
            open_values = [
                v for v in by_value if heads[v] < len(by_value[v]) and taken[v] <= floor + allowance
            ]
            if not open_values:
                if any(heads[v] < len(by_value[v]) for v in by_value):
                    self.skew_bound.add(index)  # supply is left, but only where skew forbids
                return
            value = min(open_values, key=lambda v: (by_value[v][heads[v]].price_per_hour, v))
            self._acquire(index, by_value[value][heads[value]])
            heads[value] += 1
            taken[value] += 1

    # -- (c) results --------------------------------------------------------------------------

    def result(self) -> Phase1Result:
        unsatisfied = [
            Unsatisfied(
                need=self.demand[i],
                deficit=self.remaining[i],
                same_domain=self.domain.get(i, ""),
                same_satisfiable=self.satisfiable.get(i, False),
                acquired=self.acquired.get(i, 0),
            )
            for i in self._short  # only these can still be short
            if not rv.is_zero(self.remaining[i])
        ]
        claimed = _Claims(self.claimed, self.demand, self._unread, self.credited, self.inv)
        candidates = self.memo.candidates
        if len(candidates) > 2 * len(self.demand):  # forget needs long gone, now and then
            keys = {candidates_key(n) for n in self.demand}
            self.memo.candidates = {k: v for k, v in candidates.items() if k in keys}
        if len(self.memo.totals_keys) > 2 * len(self.demand):  # the same, for totals keys
            self.memo.totals_keys = {k: k for k in self.memo.totals_keys if k in self._totals_of}
        return Phase1Result(
            self.actions,
            unsatisfied,
            claimed,
            dict(self.acquired),
            self.remaining,
            self.credited,
            self.domain,
            self.satisfiable,
            self.skew_bound,
            {cluster: n for cluster, n in self.configured_claims.items() if n},
            self._same_claims,
        )


def _store_claims(
    claimed: dict[str, int], credited: Sequence[Sequence[str]], indexes: Iterable[int]
) -> None:
    """Store the claims of replayed steps (demand indexes) kept unstored (ADR 0030)."""
    for index in indexes:
        boxed: Any = index  # boxed once per step, as in _Phase1._replay
        for machine_id in credited[index]:
            claimed[machine_id] = boxed


def _moved_at(before: AcquirableTotals, now: AcquirableTotals, value: str) -> bool:
    """Whether a domain value's acquirable totals differ between two rankings' totals
    (a loop, not `any` over a generator, which compiled code builds as an object)."""
    for at in range(len(before)):
        old, new = before[at], now[at]
        if old is not new and old.get(value) != new.get(value):
            return True
    return False


def candidates_key(need: Need) -> tuple[object, ...]:
    return (need.cluster, need_key(need))


def run(inventory: Inventory, demand: list[Need], memo: Phase1Memo | None = None) -> Phase1Result:
    """Phase 1 over one snapshot of inventory and (normalised) demand.

    With the memo of the previous cycle, clusters whose inputs did not change
    replay their credit pass instead of recomputing it; the result is the same.
    """
    phase = _Phase1(inventory, demand, memo if memo is not None else Phase1Memo())
    phase.credit_bound_supply()
    phase.acquire()
    return phase.result()
