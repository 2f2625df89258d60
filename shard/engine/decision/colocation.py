"""Co-location (Same) supply views for Phase 1: free machines grouped by domain value.

Seeding a Same need totals, per value of its topology key, the supply it
could credit (its cluster's bound machines) and acquire (Idle, Speculative),
then picks one domain by the rules of engine.md §2.6. Grouping identical
machines (same value and signature) lets it total groups, not machines.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.machine import Machine

# (assigned_group, assigned_need_fingerprint). Typed as any length so that compiled code
# keeps it as one object rather than building it anew for every dict it is a key of.
Attribution = tuple[str, ...]


@dataclass(slots=True, init=False)  # its own __init__: compiled code builds it natively
class Bucket:
    """Supply of one Same domain value for one need."""

    value: str
    count: int
    total: dict[str, int]
    creditable_total: dict[str, int]
    own_total: dict[str, int]
    # Creditable machines no other gang was given: unstamped ones and the need's own.
    unheld_total: dict[str, int]
    # A bucket kept to be ranked again carries its credit coverages of the need
    # (they cannot change while it is kept) instead of the vectors.
    coverages: tuple[float, float, float] | None

    def __init__(
        self,
        value: str,
        count: int = 0,
        total: dict[str, int] | None = None,
        creditable_total: dict[str, int] | None = None,
        own_total: dict[str, int] | None = None,
        unheld_total: dict[str, int] | None = None,
        coverages: tuple[float, float, float] | None = None,
    ) -> None:
        self.value = value
        self.count = count
        self.total = {} if total is None else total
        self.creditable_total = {} if creditable_total is None else creditable_total
        self.own_total = {} if own_total is None else own_total
        self.unheld_total = {} if unheld_total is None else unheld_total
        self.coverages = coverages

    def copy(self) -> Bucket:
        return Bucket(
            self.value,
            self.count,
            dict(self.total),
            dict(self.creditable_total),
            dict(self.own_total),
            dict(self.unheld_total),
            self.coverages,
        )

    def kept(self, deficit: rv.Vector) -> Bucket:
        """A smaller copy for ranking again against the same deficit."""
        return Bucket(self.value, self.count, dict(self.total), coverages=self._coverages(deficit))

    def _coverages(self, deficit: rv.Vector) -> tuple[float, float, float]:
        """(creditable, own-gang, unheld) coverage of the deficit, capped."""
        if self.coverages is not None:
            return self.coverages
        return (
            coverage(self.creditable_total, deficit, capped=True),
            coverage(self.own_total, deficit, capped=True),
            coverage(self.unheld_total, deficit, capped=True),
        )


@dataclass(slots=True)
class Group:
    """Free machines of one pool that share a Same domain value and a signature."""

    value: str
    sample: Machine
    machines: list[Machine] = field(default_factory=list)
    reserved: int = 0  # reserved by Same needs seeded earlier this cycle


class SameIndex:
    """One pool's free machines grouped by Same domain value, then by signature.

    Lets a co-location need total each domain's acquirable supply per group of
    identical machines instead of per machine.
    """

    def __init__(self, pool: list[Machine], key: str) -> None:
        self.by_value: dict[str, list[Group]] = {}
        self.in_order: dict[str, list[Machine]] = {}  # each value's machines in pool order
        groups: dict[tuple[str, tuple[object, ...]], Group] = {}
        for m in pool:
            value = m.attribute(key)
            if value is None:
                continue
            group = groups.get((value, m.signature))
            if group is None:
                group = groups[(value, m.signature)] = Group(value, m)
                self.by_value.setdefault(value, []).append(group)
            group.machines.append(m)
            self.in_order.setdefault(value, []).append(m)

    def moved_since(self, before: SameIndex) -> set[str]:
        """The domain values whose machines (in pool order) differ from `before`'s: only
        there do this grouping's groups, and a reservation's position among them, differ."""
        old, new = before.in_order, self.in_order
        return {value for value in old.keys() | new.keys() if old.get(value) != new.get(value)}

    def clear_reservations(self) -> None:
        for groups in self.by_value.values():
            for group in groups:
                group.reserved = 0


def attribution(m: Machine) -> Attribution:
    return (m.assigned_group, m.assigned_need_fingerprint)


@dataclass(slots=True)
class CreditGroup:
    """A cluster's bound machines sharing a Same value and a signature."""

    value: str
    sample: Machine
    machines: list[Machine] = field(default_factory=list)
    claimed: int = 0
    # Machines and claimed machines per attribution: a gang prefers its own.
    by_own: dict[Attribution, int] = field(default_factory=dict)
    claimed_by_own: dict[Attribution, int] = field(default_factory=dict)
    # Machines no gang was given (no assigned group), and how many are claimed.
    loose: int = 0
    claimed_loose: int = 0

    def own_free(self, own: Attribution) -> int:
        return self.by_own.get(own, 0) - self.claimed_by_own.get(own, 0)

    def unheld_free(self, own: Attribution) -> int:
        """Free machines that no other gang was given: unstamped ones and `own`'s."""
        loose = self.loose - self.claimed_loose
        return loose + self.own_free(own) if own[0] else loose

    def count_claim(self, own: Attribution) -> None:
        self.claimed += 1
        self.claimed_by_own[own] = self.claimed_by_own.get(own, 0) + 1
        if not own[0]:
            self.claimed_loose += 1


class CreditIndex:
    """One creditable pool grouped for co-location seeding, each value's machines in keep order.

    Its grouping holds while the pool does; the claims it counts are one cycle's
    (`clear_claims` before another cycle counts again).
    """

    def __init__(self, pool: list[Machine], key: str) -> None:
        self.by_value: dict[str, list[CreditGroup]] = {}
        self.in_order: dict[str, list[Machine]] = {}  # each value's machines in pool order
        # Each grouped machine's group and attribution: what counting its claim reads.
        self.group_of: dict[str, tuple[CreditGroup, Attribution]] = {}
        groups: dict[tuple[object, ...], CreditGroup] = {}
        for m in pool:
            value = m.attribute(key)
            if value is None:
                continue
            group = groups.get((value, m.signature))
            if group is None:
                group = groups[(value, m.signature)] = CreditGroup(value, m)
                self.by_value.setdefault(value, []).append(group)
            group.machines.append(m)
            own = attribution(m)
            group.by_own[own] = group.by_own.get(own, 0) + 1
            group.loose += not own[0]
            self.in_order.setdefault(value, []).append(m)
            self.group_of[m.id] = (group, own)

    def clear_claims(self) -> None:
        for groups in self.by_value.values():
            for group in groups:
                group.claimed = group.claimed_loose = 0
                group.claimed_by_own.clear()


def coverage(total: rv.Vector, deficit: rv.Vector, *, capped: bool) -> float:
    """Sum over wanted dimensions of have/want, each ratio capped at 1 when `capped`."""
    score = 0.0
    for name, want in deficit.items():
        if want > 0:
            ratio = total.get(name, 0) / want
            score += min(ratio, 1.0) if capped else ratio
    return score


def same_bucket_rank(b: Bucket, deficit: rv.Vector) -> tuple[object, ...]:
    """Sort key implementing engine.md §2.6 rules 1-6, with ADR 0020's rule between
    rules 3 and 4; the smallest key wins."""
    creditable, own, unheld = b._coverages(deficit)
    if rv.covers(b.total, deficit):
        # satisfiable: most already credited, most own-gang, least taken from other
        # gangs, least over-commit
        return (
            0,
            -creditable,
            -own,
            -unheld,
            coverage(b.total, deficit, capped=False),
            0.0,
            -b.count,
            b.value,
        )
    # unsatisfiable: most covering, then stay where the assembly is
    return (
        1,
        0.0,
        0.0,
        0.0,
        -coverage(b.total, deficit, capped=True),
        -creditable,
        -b.count,
        b.value,
    )


def credit_contenders(
    credit_side: dict[str, Bucket], domain: str, deficit: rv.Vector
) -> tuple[str, ...]:
    """For a need its credit covers in `domain`: the other values whose credit side alone
    ranks no worse than the domain's, the only ones acquirable supply could make win.

    Such a domain is satisfiable whatever is acquirable, and rules 1-3 (and ADR
    0020's) rank by credit coverages alone, so a value whose credit coverages rank
    below the domain's loses to it however much it could acquire.
    """
    won = credit_side.get(domain)
    if won is None:  # not a covered domain: every value may contend
        return tuple(value for value in credit_side if value != domain)
    creditable, own, unheld = won._coverages(deficit)
    contenders = []
    for value, b in credit_side.items():
        if value != domain:
            c, o, u = b._coverages(deficit)
            if (-c, -o, -u) <= (-creditable, -own, -unheld):
                contenders.append(value)
    return tuple(contenders)


def choose_same_bucket(buckets: dict[str, Bucket], deficit: rv.Vector) -> Bucket | None:
    ranked = [b for b in buckets.values() if b.count > 0]
    if not ranked:
        return None
    return min(ranked, key=lambda b: same_bucket_rank(b, deficit))


@dataclass(frozen=True, slots=True)
class DomainCoverage:
    """How much of a co-location need one domain could hold, as ranked when seeding."""

    domain: str
    per_mille: int  # of the need's scarcest resource, 0..1000
    satisfiable: bool


TOP_DOMAINS = 3


def _per_mille(total: rv.Vector, want: rv.Vector) -> int:
    shares = [
        min(1000, total.get(name, 0) * 1000 // amount)
        for name, amount in want.items()
        if amount > 0
    ]
    return min(shares, default=1000)


def best_domains(
    buckets: dict[str, Bucket], chosen: Bucket | None, want: rv.Vector
) -> tuple[DomainCoverage, ...]:
    """The chosen domain, then the best-covering others: what a verdict shows of the choice."""

    def entry(b: Bucket, per_mille: int) -> DomainCoverage:
        return DomainCoverage(b.value, per_mille, rv.covers(b.total, want))

    # Scored first, described only for the few shown (values are unique: no tie reaches
    # the bucket).
    scored = [
        (-_per_mille(b.total, want), b.value, b)
        for b in buckets.values()
        if b.count > 0 and b is not chosen
    ]
    others = [
        entry(b, -score)
        for score, _, b in heapq.nsmallest(TOP_DOMAINS - (chosen is not None), scored)
    ]
    if chosen is None:
        return tuple(others)
    return (entry(chosen, _per_mille(chosen.total, want)), *others)
