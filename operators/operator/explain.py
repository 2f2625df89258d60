"""Which CapacityRequests a shard frame concerns, so their Events explain what is happening.

Frames name profiles and machines, not requests; a request is concerned when
its requirements equal a hint's (a shape with no supply makes it wait) or
when a joining node's labels satisfy them (a node it could land on is coming).
Each request is told each thing once: that it waits, and that a node is coming
(the first one that fits; in a burst many fit, and an Event for each would cost
the API server a write per request and machine, twice with the pod's copy).
What was told is remembered for the requests of the newest roll-up only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bigfleet.operators.operator.rollup import Translated
from bigfleet.requirements import Operator
from bigfleet.wire import shard_pb2

MAX_PER_FRAME = 50  # bound the writes one frame can cause


def requirement_set(requirements: Iterable[Any]) -> frozenset[tuple[str, int, tuple[str, ...]]]:
    return frozenset((r.key, int(r.operator), tuple(sorted(r.values))) for r in requirements)


def _translated_set(t: Translated) -> frozenset[tuple[str, int, tuple[str, ...]]]:
    return frozenset((k, int(op), tuple(sorted(v))) for k, op, v in t.requirements)


def matches_labels(t: Translated, labels: Mapping[str, str]) -> bool:
    for key, number, values in t.requirements:
        value, op = labels.get(key), Operator.from_wire(number)
        if op is Operator.IN and value not in values:
            return False
        if op is Operator.NOT_IN and value in values:
            return False
        if op in (Operator.EXISTS, Operator.SAME) and value is None:
            return False
        if op is Operator.DOES_NOT_EXIST and value is not None:
            return False
    return True


class Explainer:
    def __init__(self) -> None:
        self._told: set[tuple[str, str, str]] = set()  # (namespace, name, reason)

    def __len__(self) -> int:
        return len(self._told)

    def keep(self, requests: Iterable[Translated]) -> None:
        """Forget what was told to requests no longer in the roll-up (deleted ones)."""
        live = {(t.namespace, t.name) for t in requests}
        self._told = {k for k in self._told if (k[0], k[1]) in live}

    def _fresh(self, requests: Iterable[Translated], reason: str) -> list[Translated]:
        out: list[Translated] = []
        for t in requests:
            key = (t.namespace, t.name, reason)
            if key not in self._told and len(out) < MAX_PER_FRAME:
                self._told.add(key)
                out.append(t)
        return out

    def waiting(
        self, requests: Iterable[Translated], hint: shard_pb2.AvailableCapacityUpdate
    ) -> list[Translated]:
        """Requests of the hint's shape when the hint says nothing is available."""
        wanted = requirement_set(hint.requirements)
        return self._fresh(
            (t for t in requests if _translated_set(t) == wanted), "WaitingForCapacity"
        )

    def node_coming(
        self, requests: Iterable[Translated], labels: Mapping[str, str]
    ) -> list[Translated]:
        """Requests a joining machine's `labels` fit, not told of a machine before."""
        return self._fresh((t for t in requests if matches_labels(t, labels)), "NodeComing")
