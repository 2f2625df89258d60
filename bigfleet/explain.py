"""Verdicts in words: what the shard's per-need verdict (`NeedView`) means to a workload owner.

Shared by `bigfleet explain`, `bigfleet ctl inspect-needs` and the operator's
Satisfied condition, so a person reads the same sentence wherever they look.
Also: which need a request folded into, compared by fold identity on the wire.

Kernel module: it reads wire messages and imports no component. `sentence` is
the one-line verdict, `brief` its few-word form for lists, `table` the rows a
person reads under it, `as_dict` the JSON, `condition_message` the bounded text
for a Kubernetes condition; `header_sentence` and `NOT_COMPUTED_SENTENCE` cover
a shard that has not run a cycle yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bigfleet import quantity
from bigfleet.timestamps import from_unix_ns
from bigfleet.wire import capacity_pb2, shardread_pb2

R = shardread_pb2.UnmetReason

# Condition reasons (CamelCase, as Kubernetes reasons are) per wire reason.
REASONS: dict[int, str] = {
    R.UNMET_REASON_PRIORITY_STARVED: "PriorityStarved",
    R.UNMET_REASON_NO_MATCHING_SUPPLY: "NoMatchingSupply",
    R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE: "TopologyUnsatisfiable",
    R.UNMET_REASON_PREEMPTION_EXHAUSTED: "PreemptionExhausted",
}
SATISFIED = "Satisfied"
# Unmet with no reason, but lower-priority machines are draining for all that is missing.
PREEMPTING = "Preempting"
UNSATISFIED = "Unsatisfied"  # unmet with no reason given (a shard that does not say)

FoldIdentity = tuple[object, ...]


def fold_identity(need: capacity_pb2.CapacityNeed) -> FoldIdentity:
    """What the operator folds requests by: everything but the summed resources and unit."""
    return (
        tuple(sorted((r.key, int(r.operator), tuple(sorted(r.values))) for r in need.requirements)),
        tuple(sorted((s.topology_key, s.max_skew, int(s.when_unsatisfiable)) for s in need.spread)),
        need.priority,
        int(need.interruption_penalty_bucket),
        int(need.reclamation_penalty_bucket),
        need.group,
    )


def reason(view: shardread_pb2.NeedView) -> str:
    """The condition reason for a verdict."""
    if view.satisfied:
        return SATISFIED
    named = REASONS.get(int(view.unmet_reason))
    if named is not None:
        return named
    return PREEMPTING if view.preemption.victims_found else UNSATISFIED


# ---------------------------------------------------------------------------------------------
# Words. Everything below is deterministic: the same view gives the same text, byte for byte.

NOT_COMPUTED = "NotComputed"  # the reason when the shard has no verdict at all yet
NOT_COMPUTED_SENTENCE = (
    "not computed yet: the shard has not run a cycle since it started; "
    "ask again after its first cycle"
)
MAX_CONDITION_MESSAGE = 300  # characters of a Kubernetes condition message
MAX_VALUES = 5  # label values named per requirement before "or N more"
MAX_CANDIDATES = 3  # co-location domains named in a sentence

Op = capacity_pb2.NodeSelectorRequirement.Operator

# Well-known label keys in the words people use for them; any other key reads as its last
# path segment ("bigfleet.lucy.sh/capacity-type" -> "capacity type").
LABEL_WORDS: dict[str, str] = {
    "node.kubernetes.io/instance-type": "instance type",
    "beta.kubernetes.io/instance-type": "instance type",
    "topology.kubernetes.io/zone": "zone",
    "failure-domain.beta.kubernetes.io/zone": "zone",
    "topology.kubernetes.io/region": "region",
    "failure-domain.beta.kubernetes.io/region": "region",
    "kubernetes.io/hostname": "host",
    "kubernetes.io/arch": "architecture",
    "kubernetes.io/os": "operating system",
}
# Dimensions measured in bytes, shown with binary suffixes ("34359738368" -> "32Gi").
_BYTE_DIMENSIONS = frozenset({"memory", "ephemeral-storage", "storage"})
_BINARY = (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10))
_OPERATOR_NAMES = {
    Op.OPERATOR_IN: "In",
    Op.OPERATOR_NOT_IN: "NotIn",
    Op.OPERATOR_EXISTS: "Exists",
    Op.OPERATOR_DOES_NOT_EXIST: "DoesNotExist",
    Op.OPERATOR_SAME: "Same",
}


def plural(count: int, word: str) -> str:
    """`1 machine`, `3 machines`, `1 cycle`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def label_words(key: str) -> str:
    """A label key as a person says it: `zone`, `instance type`, `rack`."""
    known = LABEL_WORDS.get(key)
    if known is not None:
        return known
    return key.rpartition("/")[2].replace("-", " ").replace("_", " ") or key


def domain_words(key: str) -> str:
    """A co-location key named both ways: `rack (topology.kubernetes.io/rack)`."""
    words = label_words(key)
    return words if words == key else f"{words} ({key})"


def show_quantity(name: str, text: str) -> str:
    """A quantity for reading: canonical, bytes with the largest exact binary suffix.

    Text that is not a quantity is shown as it came (a view is never refused for it).
    """
    try:
        milli = quantity.to_milli(text)
    except (quantity.InvalidQuantity, ArithmeticError):
        return text
    if (name in _BYTE_DIMENSIONS or name.startswith("hugepages-")) and milli % 1000 == 0:
        units = milli // 1000
        for suffix, shift in _BINARY:
            if units >= 1 << shift and units % (1 << shift) == 0:
                return f"{units >> shift}{suffix}"
    return quantity.from_milli(milli)


def _is_zero(text: str) -> bool:
    try:
        return quantity.to_milli(text) == 0
    except (quantity.InvalidQuantity, ArithmeticError):
        return False


def resources_words(resources: Mapping[str, str]) -> str:
    """`cpu 8, memory 32Gi`: every non-zero dimension by name; empty for none."""
    return ", ".join(
        f"{name} {show_quantity(name, resources[name])}"
        for name in sorted(resources)
        if not _is_zero(resources[name])
    )


def _or_list(values: Sequence[str]) -> str:
    """`a`, `a or b`, `a, b or c`, `a, b, c, d, e or 3 more`."""
    shown = list(values[:MAX_VALUES])
    if len(values) > MAX_VALUES:
        return f"{', '.join(shown)} or {len(values) - MAX_VALUES} more"
    if len(shown) <= 1:
        return "".join(shown)
    return f"{', '.join(shown[:-1])} or {shown[-1]}"


def requirement_words(r: capacity_pb2.NodeSelectorRequirement) -> str:
    """One requirement as a phrase: `zone a or b`, `capacity type other than spot`, ..."""
    words, values = label_words(r.key), sorted(r.values)
    match r.operator:
        case Op.OPERATOR_IN:
            return f"{words} {_or_list(values)}"
        case Op.OPERATOR_NOT_IN:
            return f"{words} other than {_or_list(values)}"
        case Op.OPERATOR_EXISTS:
            return f"with {words}"
        case Op.OPERATOR_DOES_NOT_EXIST:
            return f"without {words}"
        case Op.OPERATOR_SAME:
            where = f" of {_or_list(values)}" if values else ""
            return f"all in one {words}{where}"
    return f"{r.key} (operator {int(r.operator)})"


def requirement_text(r: capacity_pb2.NodeSelectorRequirement) -> str:
    """One requirement as written in a CapacityRequest: `zone In (a,b)`, `gpu Exists`."""
    name = _OPERATOR_NAMES.get(r.operator, str(int(r.operator)))
    values = sorted(r.values)
    return f"{r.key} {name} ({','.join(values)})" if values else f"{r.key} {name}"


def _sorted_requirements(
    need: capacity_pb2.CapacityNeed,
) -> list[capacity_pb2.NodeSelectorRequirement]:
    return sorted(need.requirements, key=lambda r: (r.key, int(r.operator), sorted(r.values)))


def _filters(need: capacity_pb2.CapacityNeed) -> str:
    """What a matching machine's labels must say (a Same without values filters nothing)."""
    phrases = []
    for r in _sorted_requirements(need):
        if r.operator == Op.OPERATOR_SAME:
            if r.values:
                phrases.append(f"{label_words(r.key)} {_or_list(sorted(r.values))}")
            continue
        phrases.append(requirement_words(r))
    return ", ".join(phrases)


def _same_key(need: capacity_pb2.CapacityNeed) -> str:
    return next((r.key for r in _sorted_requirements(need) if r.operator == Op.OPERATOR_SAME), "")


def shape(need: capacity_pb2.CapacityNeed) -> str:
    """A need in one short line: `cpu 8, memory 32Gi; zone a; all in one rack`."""
    parts = [resources_words(need.aggregate_resources) or "no resources"]
    filters = _filters(need)
    if filters:
        parts.append(filters)
    same = _same_key(need)
    if same:
        parts.append(f"all in one {label_words(same)}")
    return "; ".join(parts)


def _percent(per_mille: int) -> str:
    per_mille = max(0, min(1000, per_mille))
    return f"{per_mille // 10}%" if per_mille % 10 == 0 else f"{per_mille / 10:.1f}%"


def _progress(view: shardread_pb2.NeedView) -> str:
    """`1 bootstrapped and 2 being provisioned this cycle`; empty when nothing moved."""
    moved = []
    if view.bootstrap_count:
        moved.append(f"{view.bootstrap_count} bootstrapped")
    if view.provision_count:
        moved.append(f"{view.provision_count} being provisioned")
    return f"{' and '.join(moved)} this cycle" if moved else ""


def _short_by(view: shardread_pb2.NeedView) -> str:
    missing = resources_words(view.residual_deficit.resources)
    return f"short by {missing}" if missing else ""


def _supply_total(view: shardread_pb2.NeedView) -> tuple[int, str]:
    """(count, `4` or `at least 4`) of the matching machines the shard counted."""
    s = view.matching_supply
    total = s.idle + s.configured + s.speculative + s.in_transition
    return total, f"at least {total}" if s.capped else str(total)


def _supply_states(view: shardread_pb2.NeedView) -> str:
    s = view.matching_supply
    states = f"{s.idle} Idle, {s.configured} Configured, {s.speculative} Speculative"
    return f"{states}, {s.in_transition} changing state" if s.in_transition else states


def _starved(view: shardread_pb2.NeedView) -> list[str]:
    total, count = _supply_total(view)
    exist = "exists" if total == 1 and not view.matching_supply.capped else "exist"
    it = "it" if total == 1 else "them"
    head = (
        f"{count} matching {'machine' if total == 1 else 'machines'} {exist} "
        f"({_supply_states(view)}) but needs of higher priority hold {it}"
    )
    return [head, _short_by(view)]


def _no_supply(view: shardread_pb2.NeedView) -> list[str]:
    filters = _filters(view.need)
    unit = resources_words(view.need.min_unit)
    if filters:
        what = f"no machine matching {filters}"
    elif unit:
        what = f"no machine with room for {unit}"
    else:
        what = "no machine"
    if view.claimed_machine_count:
        head = f"{what} exists beyond the ones it already has"
    else:
        head = f"{what} exists in any state (Idle, Configured or Speculative)"
    return [head, "the fleet needs such machines before this can be met"]


def _strict_spread(need: capacity_pb2.CapacityNeed) -> capacity_pb2.TopologySpread | None:
    strict = capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE
    return next((s for s in need.spread if s.when_unsatisfiable == strict), None)


def _topology(view: shardread_pb2.NeedView) -> list[str]:
    key = _same_key(view.need)
    spread = _strict_spread(view.need)
    if not key and spread is not None:
        return [
            f"spreading across {label_words(spread.topology_key)} with max skew "
            f"{max(1, spread.max_skew)} leaves only machines the skew rules out",
            _short_by(view),
        ]
    domain = domain_words(key) if key else "co-location domain (rack, zone)"
    head = f"no single {domain} can hold the whole gang"
    candidates = list(view.same_candidates[:MAX_CANDIDATES])
    if candidates:
        first, *rest = candidates
        best = ", ".join(
            [f"{first.domain} covers {_percent(first.coverage_per_mille)}"]
            + [f"{c.domain} {_percent(c.coverage_per_mille)}" for c in rest]
        )
        more = len(view.same_candidates) - len(candidates)
        head += f"; best: {best}" + (f" (and {more} more)" if more > 0 else "")
    else:
        head += f"; no {label_words(key) if key else 'domain'} has any matching machine"
    assembling = f"assembling in {view.same_domain}" if view.same_domain else ""
    return [head, assembling]


def _preemption(view: shardread_pb2.NeedView) -> list[str]:
    missing = resources_words(view.residual_deficit.resources) or "some capacity"
    verb = "are" if ", " in missing else "is"
    victims = view.preemption.victims_found
    if not victims:
        return [f"no lower-priority machine can be preempted for it; {missing} {verb} missing"]
    freed = resources_words(view.preemption.capacity_freed.resources)
    preempting = f"preempting {victims} lower-priority {'machine' if victims == 1 else 'machines'}"
    if freed:
        return [f"{preempting} frees {freed} but {missing} {verb} still missing"]
    return [f"{preempting} is not enough: {missing} {verb} still missing"]


def _preempting(view: shardread_pb2.NeedView) -> list[str]:
    victims = view.preemption.victims_found
    freed = resources_words(view.preemption.capacity_freed.resources) or "their capacity"
    machines, done = (
        ("machine drains", "it has") if victims == 1 else ("machines drain", "they have")
    )
    return [f"{victims} lower-priority {machines} for it, freeing {freed}; met once {done} drained"]


def _unexplained(view: shardread_pb2.NeedView) -> list[str]:
    return ["not met (the shard gave no reason)", _short_by(view)]


_BODIES: dict[str, Callable[[shardread_pb2.NeedView], list[str]]] = {
    REASONS[R.UNMET_REASON_PRIORITY_STARVED]: _starved,
    REASONS[R.UNMET_REASON_NO_MATCHING_SUPPLY]: _no_supply,
    REASONS[R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE]: _topology,
    REASONS[R.UNMET_REASON_PREEMPTION_EXHAUSTED]: _preemption,
    PREEMPTING: _preempting,
    UNSATISFIED: _unexplained,
}


def _satisfied(view: shardread_pb2.NeedView) -> str:
    cluster = f"cluster {view.cluster_id}" if view.cluster_id else "its cluster"
    progress = _progress(view)
    if view.claimed_machine_count:
        text = f"satisfied: {plural(view.claimed_machine_count, 'machine')} of {cluster} cover it"
    else:
        text = f"satisfied: {cluster} needs no more machines for it"
    return f"{text} ({progress})" if progress else text


def _unmet_clauses(view: shardread_pb2.NeedView) -> list[str]:
    clauses = []
    progress = _progress(view)
    if view.claimed_machine_count:
        claimed = f"{plural(view.claimed_machine_count, 'machine')} already claimed"
        clauses.append(f"{claimed} ({progress})" if progress else claimed)
    elif progress:
        clauses.append(progress)
    if view.acquisition_parked:
        cycles = plural(view.parked_age_cycles, "cycle")
        clauses.append(f"acquisition parked for {cycles}; re-probed periodically")
    if view.age_cycles_unmet:
        clauses.append(f"unmet for {plural(view.age_cycles_unmet, 'cycle')}")
    return clauses


def sentence(view: shardread_pb2.NeedView) -> str:
    """The verdict as a workload owner reads it: `satisfied: ...` or `waiting: ...`."""
    if view.satisfied:
        return _satisfied(view)
    body = [part for part in _BODIES[reason(view)](view) if part]
    return "; ".join([f"waiting: {body[0]}", *body[1:], *_unmet_clauses(view)])


def brief(view: shardread_pb2.NeedView) -> str:
    """The verdict in a few words, for one line of a list."""
    if view.satisfied:
        return f"{plural(view.claimed_machine_count, 'machine')} cover it"
    why = int(view.unmet_reason)
    if why == R.UNMET_REASON_PRIORITY_STARVED:
        _, count = _supply_total(view)
        text = f"{count} matching held by higher priority"
    elif why == R.UNMET_REASON_NO_MATCHING_SUPPLY:
        beyond = "beyond its own" if view.claimed_machine_count else "in any state"
        text = f"no matching machine {beyond}"
    elif why == R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE:
        key = _same_key(view.need)
        spread = _strict_spread(view.need)
        if not key and spread is not None:
            text = f"{label_words(spread.topology_key)} skew rules out the rest"
        else:
            text = f"no single {label_words(key) if key else 'domain'} fits the gang"
        if view.same_candidates:
            best = view.same_candidates[0]
            text += f" (best {best.domain} {_percent(best.coverage_per_mille)})"
    elif why == R.UNMET_REASON_PREEMPTION_EXHAUSTED:
        victims = view.preemption.victims_found
        text = f"preempting {victims} is not enough" if victims else "nothing to preempt"
    elif view.preemption.victims_found:
        text = f"preempting {view.preemption.victims_found} lower-priority"
    else:
        text = "not met"
    short = _short_by(view)
    if short:
        text += f"; {short}"
    if view.acquisition_parked:
        text += "; parked"
    return text


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rstrip()
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space].rstrip(" ,;:")
    return cut + "…"


def condition_message(view: shardread_pb2.NeedView) -> str:
    """The sentence for a Kubernetes condition message, at most MAX_CONDITION_MESSAGE characters."""
    return _clip(sentence(view), MAX_CONDITION_MESSAGE)


def no_need_sentence(phase: str) -> str:
    """What to say when the shard's verdicts hold no need for a request."""
    return (
        "the shard has no need for this request yet: the operator has not rolled it up "
        f"(phase: {phase or 'Pending'}) or the shard's cycle has not run"
    )


# ---------------------------------------------------------------------------------------------
# The header: which cycle the verdicts come from.


def computed(header: shardread_pb2.InspectNeedsHeader | None) -> bool:
    """Whether the shard has verdicts at all (no header, or cycle 0, means not yet)."""
    return header is not None and header.cycle != 0


def header_sentence(header: shardread_pb2.InspectNeedsHeader | None) -> str:
    """`cycle 42, computed 2026-...Z, 7 needs` or the not-computed sentence."""
    if header is None or not computed(header):
        return NOT_COMPUTED_SENTENCE
    when = from_unix_ns(header.computed_at_unix_nanos) if header.computed_at_unix_nanos else "—"
    return f"cycle {header.cycle}, computed {when}, {plural(header.total_needs, 'need')}"


def header_dict(header: shardread_pb2.InspectNeedsHeader | None) -> dict[str, object]:
    """The header for JSON; `computed` false (and cycle 0) when the shard has no verdicts."""
    if header is None or not computed(header):
        return {
            "computed": False,
            "cycle": 0,
            "computed_at": None,
            "computed_at_unix_nanos": 0,
            "total_needs": header.total_needs if header is not None else 0,
            "message": NOT_COMPUTED_SENTENCE,
        }
    return {
        "computed": True,
        "cycle": header.cycle,
        "computed_at": from_unix_ns(header.computed_at_unix_nanos)
        if header.computed_at_unix_nanos
        else None,
        "computed_at_unix_nanos": header.computed_at_unix_nanos,
        "total_needs": header.total_needs,
    }


# ---------------------------------------------------------------------------------------------
# Rows and JSON.


def table(view: shardread_pb2.NeedView) -> list[tuple[str, str]]:
    """(field, value) rows a person reads under the sentence; unset parts left out."""
    need = view.need
    rows = [
        ("cluster", view.cluster_id or "—"),
        ("verdict", reason(view)),
        ("priority", str(need.priority)),
        ("resources (need total)", resources_words(need.aggregate_resources) or "—"),
        ("each machine must hold", resources_words(need.min_unit) or "—"),
        ("requirements", "; ".join(requirement_text(r) for r in _sorted_requirements(need)) or "—"),
    ]
    if need.spread:
        spread = sorted(need.spread, key=lambda s: (s.topology_key, s.max_skew))
        rows.append(
            ("spread", "; ".join(f"{s.topology_key} max skew {s.max_skew}" for s in spread))
        )
    rows.append(
        ("arrived", from_unix_ns(view.arrival_unix_nanos) if view.arrival_unix_nanos else "—")
    )
    rows.append(("profile fingerprint", view.profile_fingerprint or "—"))
    if not view.satisfied:
        rows.append(("short by", resources_words(view.residual_deficit.resources) or "—"))
    claimed = str(view.claimed_machine_count)
    progress = _progress(view)
    rows.append(("claimed machines", f"{claimed} ({progress})" if progress else claimed))
    if view.HasField("matching_supply"):
        _, count = _supply_total(view)
        rows.append(("matching supply", f"{count} ({_supply_states(view)})"))
    if view.HasField("preemption"):
        freed = resources_words(view.preemption.capacity_freed.resources) or "nothing"
        victims = plural(view.preemption.victims_found, "lower-priority machine")
        rows.append(("preemption", f"{victims}, freeing {freed}"))
    same = _same_key(need)
    if same or view.same_domain:
        satisfiable = "satisfiable" if view.same_satisfiable else "not satisfiable"
        chosen = view.same_domain or "none chosen yet"
        where = f"all in one {domain_words(same)}; " if same else ""
        rows.append(("co-location", f"{where}{chosen} ({satisfiable})"))
    if view.same_candidates:
        rows.append(
            (
                "domain candidates",
                ", ".join(
                    f"{c.domain} {_percent(c.coverage_per_mille)}"
                    + (" (satisfiable)" if c.satisfiable else "")
                    for c in view.same_candidates
                ),
            )
        )
    if view.acquisition_parked:
        rows.append(("acquisition parked", f"for {plural(view.parked_age_cycles, 'cycle')}"))
    if not view.satisfied:
        rows.append(("unmet for", plural(view.age_cycles_unmet, "cycle")))
    return rows


def _quantities(resources: Mapping[str, str]) -> dict[str, str]:
    return {name: resources[name] for name in sorted(resources)}


def as_dict(view: shardread_pb2.NeedView) -> dict[str, object]:
    """The view for JSON: stable keys, the reason by name, quantities as the strings sent."""
    need = view.need
    supply = view.matching_supply
    return {
        "cluster_id": view.cluster_id,
        "reason": reason(view),
        "satisfied": view.satisfied,
        "sentence": sentence(view),
        "need": {
            "priority": need.priority,
            "requirements": [
                {
                    "key": r.key,
                    "operator": _OPERATOR_NAMES.get(r.operator, str(int(r.operator))),
                    "values": sorted(r.values),
                }
                for r in _sorted_requirements(need)
            ],
            "aggregate_resources": _quantities(need.aggregate_resources),
            "min_unit": _quantities(need.min_unit),
            "spread": [
                {"topology_key": s.topology_key, "max_skew": s.max_skew}
                for s in sorted(need.spread, key=lambda s: (s.topology_key, s.max_skew))
            ],
            "interruption_penalty_bucket": int(need.interruption_penalty_bucket),
            "reclamation_penalty_bucket": int(need.reclamation_penalty_bucket),
            "group": need.group,
        },
        "arrival": from_unix_ns(view.arrival_unix_nanos) if view.arrival_unix_nanos else None,
        "arrival_unix_nanos": view.arrival_unix_nanos,
        "profile_fingerprint": view.profile_fingerprint,
        "residual_deficit": _quantities(view.residual_deficit.resources),
        "claimed_machine_count": view.claimed_machine_count,
        "bootstrap_count": view.bootstrap_count,
        "provision_count": view.provision_count,
        "same_domain": view.same_domain,
        "same_satisfiable": view.same_satisfiable,
        "acquisition_parked": view.acquisition_parked,
        "parked_age_cycles": view.parked_age_cycles,
        "age_cycles_unmet": view.age_cycles_unmet,
        "matching_supply": {
            "idle": supply.idle,
            "configured": supply.configured,
            "speculative": supply.speculative,
            "in_transition": supply.in_transition,
            "capped": supply.capped,
        }
        if view.HasField("matching_supply")
        else None,
        "preemption": {
            "victims_found": view.preemption.victims_found,
            "capacity_freed": _quantities(view.preemption.capacity_freed.resources),
        }
        if view.HasField("preemption")
        else None,
        "same_candidates": [
            {
                "domain": c.domain,
                "coverage_per_mille": c.coverage_per_mille,
                "satisfiable": c.satisfiable,
            }
            for c in view.same_candidates
        ],
    }
