"""Roll-up: a cluster's CapacityRequests folded into one full-replacement ClusterCapacityNeeds.

Each CR is translated (requirements canonicalised, penalties bucketed, strict
spread kept, co-location turned into a gang id plus a Same requirement) and
CRs with the same profile and gang fold into one need: requests summed into
`aggregate_resources`, their per-dimension maximum into `min_unit`. A CR the
operator cannot translate, whatever its translation raises, is reported and
left out; the rest still goes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bigfleet import penalty, quantity
from bigfleet.crd.models import CoLocation, LabelSelector
from bigfleet.operators.operator.capacity_requests import Untranslatable, decode
from bigfleet.requirements import Operator
from bigfleet.wire import capacity_pb2

Req = capacity_pb2.NodeSelectorRequirement
log = logging.getLogger(__name__)

# The wire number of each operator name the model admits (a dict beats an enum call per CR).
_WIRE = {op.value: op.wire for op in Operator}


@dataclass(frozen=True)
class Translated:
    namespace: str
    name: str
    phase: str
    key: tuple[object, ...]  # (requirements, spread, priority, buckets, group): the fold key
    requirements: tuple[tuple[str, int, tuple[str, ...]], ...]
    spread: tuple[tuple[str, int], ...]
    priority: int
    interruption_bucket: int
    reclamation_bucket: int
    group: str
    resources: dict[str, int] = field(compare=False)


def _bucket(value: str | None) -> int:
    if value is None:
        return penalty.UNSPECIFIED
    try:
        return penalty.bucket_for_dollars(float(quantity.parse(value)))
    except quantity.InvalidQuantity as err:
        raise Untranslatable(f"penalty {value!r} is not a quantity") from err
    except ArithmeticError as err:  # overflows a float or a bucket (1e999999)
        raise Untranslatable(f"penalty {value!r} is out of range") from err


def _group(co_location: CoLocation | None) -> tuple[str, str | None]:
    """(gang id, the Same key) from `spec.coLocation`; empty without one."""
    if co_location is None:
        return "", None
    key = co_location.topology_key
    selector = co_location.label_selector or LabelSelector()
    labels = ",".join(f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items()))
    expressions = ";".join(
        f"{e.key} {e.operator} {','.join(sorted(e.values or ()))}"
        for e in sorted(selector.match_expressions or (), key=lambda e: (e.key, e.operator))
    )
    return f"{key}\x00{labels}|{expressions}", key


def translate(cr: Mapping[str, Any]) -> Translated:
    """One CR, as read from the API server, decoded and turned into demand."""
    request = decode(cr)
    spec = request.spec
    requirements = [
        (r.key, _WIRE[r.operator], tuple(sorted(r.values or ()))) for r in spec.requirements or ()
    ]
    group, same_key = _group(spec.co_location)
    same = Operator.SAME.wire
    if same_key is not None and not any(
        key == same_key and op == same for key, op, _ in requirements
    ):
        requirements.append((same_key, same, ()))
    requirements.sort(key=lambda r: (r[0], r[1]))
    spread = tuple(
        sorted(
            (s.topology_key, s.max_skew)
            for s in spec.topology_spread or ()
            if s.when_unsatisfiable == "DoNotSchedule"  # ScheduleAnyway is only a preference
        )
    )
    resources = {}
    for name, value in spec.resources.items():
        try:
            milli = quantity.to_milli(value)
        except quantity.InvalidQuantity as err:
            raise Untranslatable(str(err)) from err
        except ArithmeticError as err:  # 1e999999 passes the schema but overflows here
            raise Untranslatable(f"resources.{name}: {value!r} is out of range") from err
        if milli:  # a zero request asks for nothing, and a need's units must be positive
            resources[name] = milli
    interruption = _bucket(spec.interruption_penalty)
    reclamation = _bucket(spec.reclamation_penalty)
    reqs = tuple(requirements)
    return Translated(
        namespace=request.namespace,
        name=request.name,
        phase=request.status.phase or "Pending",
        key=(reqs, spread, spec.priority, interruption, reclamation, group),
        requirements=reqs,
        spread=spread,
        priority=spec.priority,
        interruption_bucket=interruption,
        reclamation_bucket=reclamation,
        group=group,
        resources=resources,
    )


@dataclass
class Rollup:
    message: capacity_pb2.ClusterCapacityNeeds
    pending: list[Translated]  # CRs to mark Acknowledged once the shard acknowledged
    problems: list[Problem]  # CRs left out
    translated: list[Translated]  # every CR that went into the roll-up
    # The fold key of each need in `message.needs`, in the same order: which requests a need
    # (and so the shard's verdict on it) stands for.
    need_keys: list[tuple[object, ...]] = field(default_factory=list)


def _text(milli: int) -> str:
    return quantity.from_milli(milli)


Problem = tuple[str, str, str]  # (namespace, name, why) of a CR left out


# What translating an object the API server admitted may raise: a request the models or the
# quantities refuse (Untranslatable, ValueError), a number out of range (ArithmeticError:
# OverflowError, decimal's Overflow), an object missing a part or of the wrong shape.
EXPECTED = (Untranslatable, ValueError, ArithmeticError, KeyError, TypeError, AttributeError)


def _attempt(cr: Mapping[str, Any]) -> Translated | Problem:
    """One CR translated, or why not. Nothing one request holds may stop the roll-up of the
    others: past the expected failures, any other exception is a bug in translation, logged
    with its traceback and reported against the request like the rest."""
    try:
        return translate(cr)
    except EXPECTED as err:
        why = str(err) or type(err).__name__
    except Exception as err:
        log.exception("CapacityRequest translation failed unexpectedly")
        why = f"translation failed: {type(err).__name__}: {err}"
    meta = cr.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")), why)


class Memo:
    """Last roll-up's translations, by the very object they came from.

    The operator's request cache hands out the same dict for a request until an event
    replaces it, so an unchanged request is decoded once, not once per roll-up. The memo
    holds the objects it saw last time, so an id cannot be reused while it is in here.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Mapping[str, Any], Translated | Problem]] = {}

    def outcomes(self, crs: Iterable[Mapping[str, Any]]) -> list[Translated | Problem]:
        seen: dict[int, tuple[Mapping[str, Any], Translated | Problem]] = {}
        for cr in crs:
            hit = self._seen.get(id(cr))
            outcome = hit[1] if hit is not None and hit[0] is cr else _attempt(cr)
            seen[id(cr)] = (cr, outcome)
        self._seen = seen
        return [outcome for _, outcome in seen.values()]


def build(
    cluster: str, crs: Iterable[Mapping[str, Any]], now_ns: int, memo: Memo | None = None
) -> Rollup:
    folded: dict[tuple[object, ...], tuple[Translated, dict[str, int], dict[str, int]]] = {}
    pending: list[Translated] = []
    translated: list[Translated] = []
    problems: list[Problem] = []
    for t in (memo or Memo()).outcomes(crs):
        if not isinstance(t, Translated):
            problems.append(t)
            continue
        translated.append(t)
        if t.phase == "Pending":
            pending.append(t)
        first, total, unit = folded.get(t.key, (t, {}, {}))
        for name, milli in t.resources.items():
            total[name] = total.get(name, 0) + milli
            unit[name] = max(unit.get(name, 0), milli)
        folded[t.key] = (first, total, unit)
    needs = []
    keys = sorted(folded, key=repr)  # deterministic order
    for key in keys:
        t, total, unit = folded[key]
        needs.append(
            capacity_pb2.CapacityNeed(
                requirements=[
                    Req(key=k, operator=op, values=v)  # type: ignore[arg-type]
                    for k, op, v in t.requirements
                ],
                aggregate_resources={n: _text(v) for n, v in sorted(total.items())},
                priority=t.priority,
                spread=[
                    capacity_pb2.TopologySpread(
                        topology_key=k,
                        max_skew=skew,
                        when_unsatisfiable=capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE,
                    )
                    for k, skew in t.spread
                ],
                interruption_penalty_bucket=t.interruption_bucket,  # type: ignore[arg-type]
                reclamation_penalty_bucket=t.reclamation_bucket,  # type: ignore[arg-type]
                min_unit={n: _text(v) for n, v in sorted(unit.items())},
                group=t.group,
            )
        )
    message = capacity_pb2.ClusterCapacityNeeds(
        cluster_id=cluster, timestamp_unix_nanos=now_ns, needs=needs
    )
    return Rollup(message, pending, problems, translated, keys)
