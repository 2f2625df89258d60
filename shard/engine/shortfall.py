"""The shortfall ledger: demand left unmet after preemption, summed per profile and aged."""

from __future__ import annotations

from dataclasses import dataclass

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.decision.actions import Unsatisfied
from bigfleet.shard.engine.profile import Profile

REPORT_LIMIT = 100
ESCALATE_AFTER_CYCLES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Shortfall:
    profile: Profile
    deficit: rv.Vector
    age_cycles: int

    @property
    def escalates(self) -> bool:
        """Old enough for the coordinator to act on (the shard itself does not)."""
        return self.age_cycles > ESCALATE_AFTER_CYCLES


class ShortfallLedger:
    def __init__(self) -> None:
        self._entries: dict[str, Shortfall] = {}

    def record(self, unresolved: list[Unsatisfied]) -> None:
        """One cycle's unresolved needs: sum per fingerprint, age survivors, forget the rest."""
        sums: dict[str, tuple[Profile, dict[str, int]]] = {}
        for u in unresolved:
            profile, total = sums.get(u.need.fingerprint, (u.need.profile, {}))
            sums[u.need.fingerprint] = (profile, rv.add(total, u.deficit))
        entries = {}
        for fingerprint, (profile, deficit) in sums.items():
            previous = self._entries.get(fingerprint)
            age = previous.age_cycles + 1 if previous else 1
            entries[fingerprint] = Shortfall(profile=profile, deficit=deficit, age_cycles=age)
        self._entries = entries

    def report(self, limit: int = REPORT_LIMIT) -> list[Shortfall]:
        """Priority desc, then age desc, then fingerprint for determinism."""
        ordered = sorted(
            self._entries.values(),
            key=lambda s: (-s.profile.priority, -s.age_cycles, s.profile.fingerprint),
        )
        return ordered[:limit]

    def __len__(self) -> int:
        return len(self._entries)
