"""How a shard names the machines it lets go of, in an instruction acknowledgement.

The wire gives a shard one free-text `reason` to answer an instruction with,
so a donor lists its machine ids there: "released: a,b" once they are no
longer its own, "draining: a,b" while they drain for another shard. Both
sides of the coordinator link read and write it through this module.
"""

from __future__ import annotations

from collections.abc import Iterable

RELEASED = "released: "
DRAINING = "draining: "


def naming(prefix: str, ids: Iterable[str]) -> str:
    return prefix + ",".join(ids)


def ids_in(reason: str, prefix: str) -> list[str]:
    """The machine ids `reason` names after `prefix`; empty when it names none."""
    _, found, rest = reason.partition(prefix)
    return [i for i in rest.split(";")[0].strip().split(",") if i] if found else []
