"""Which of its providers' machines this shard owns.

Shards may share a provider, so "the provider lists it" is not ownership.
A shard owns a machine when the coordinator gave it the machine's topology
domain (or gave it no domain at all: a lone shard owns everything), or
handed the machine over by id; it stops owning a machine the moment it
releases it to another shard. Releases are written to disk before the
coordinator hears of them, so a restart can never take a machine back that
another shard may already be claiming: that is what keeps a machine from
ever being owned by two shards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bigfleet.shard.engine.machine import Machine

Domain = tuple[str, str]  # (topology key, value)


@dataclass
class Ownership:
    path: Path | None = None  # None: in memory only (tests, the simulator)
    domains: set[Domain] = field(default_factory=set)
    claimed: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    # Outcomes of instructions already carried out, so a redelivery gets the same answer.
    done: dict[str, tuple[int, str]] = field(default_factory=dict)
    remember: int = 1000

    @classmethod
    def load(cls, path: Path) -> Ownership:
        if not path.exists():
            return cls(path)
        saved = json.loads(path.read_text())
        return cls(
            path,
            domains={(k, v) for k, v in saved.get("domains", [])},
            claimed=set(saved.get("claimed", [])),
            released=set(saved.get("released", [])),
            done={i: (o, r) for i, o, r in saved.get("done", [])},
        )

    def owns(self, m: Machine) -> bool:
        if m.id in self.released:
            return False
        if m.id in self.claimed or not self.domains:
            return True
        return any(m.attribute(key) == value for key, value in self.domains)

    def release(self, ids: list[str]) -> None:
        self.released.update(ids)
        self.claimed.difference_update(ids)

    def claim(self, ids: list[str]) -> None:
        self.claimed.update(ids)
        self.released.difference_update(ids)

    def finish(self, instruction_id: str, outcome: int, reason: str) -> None:
        self.done[instruction_id] = (outcome, reason)
        while len(self.done) > self.remember:
            self.done.pop(next(iter(self.done)))

    def save(self) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half."""
        if self.path is None:
            return
        document = {
            "domains": sorted(self.domains),
            "claimed": sorted(self.claimed),
            "released": sorted(self.released),
            "done": [[i, o, r] for i, (o, r) in self.done.items()],
        }
        scratch = self.path.with_suffix(".tmp")
        with scratch.open("w") as f:
            json.dump(document, f)
            f.flush()
            os.fsync(f.fileno())
        scratch.replace(self.path)
