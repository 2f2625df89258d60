"""A closed-loop scenario's declared pass conditions, checked against its run.

Each condition a scenario declares is evaluated to held or not, with the
figures behind it. A normal scenario passes when every condition holds. A
canary (`canary: cascades` or `oscillates`) re-enables a historical bug: it
passes when its signature shows and every other declared condition FAILS,
which proves the harness sees that class of bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bigfleet.sim.closedloop.spec import Expect
from bigfleet.sim.runner import CycleCounts

CASCADE_RECLAIM_CYCLES = 5  # reclaims in at least this many cycles, and demand destroyed
OSCILLATION_ACTIONS = 100  # reclaims and acquisitions each, in the window


def field(c: CycleCounts, name: str) -> int:
    if name in c.actions:
        return c.actions[name]
    if name == "churn":
        return c.churn
    if name == "configured":
        return c.configured
    if name == "demand":
        return c.demand or 0
    if name == "shortfalls":
        return c.shortfalls
    return (c.pods or {}).get(name, 0)


def check(
    expect: Expect, counts: Sequence[CycleCounts], report: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """([{condition, held, detail}], problems): the problems are empty when the run passes."""
    results: list[dict[str, Any]] = []

    def note(condition: str, held: bool, detail: str) -> None:
        results.append({"condition": condition, "held": held, "detail": detail})

    if not counts:
        return [], ["no cycle ran"]
    k = expect.quiescent_last or len(counts)
    window = list(counts[-k:])
    last = counts[-1]
    shortfalls = [c.shortfalls for c in window]
    if expect.quiescent_last is not None:
        churn = sum(c.churn for c in window)
        steady = len(counts) >= k and churn == 0 and len(set(shortfalls)) == 1
        note(
            "quiescent_last",
            steady,
            f"last {k} cycles: {churn} actions, shortfall counts {sorted(set(shortfalls))}",
        )
    if expect.shortfall is not None:
        if expect.shortfall == "zero":
            held = not any(shortfalls)
        else:
            held = len(set(shortfalls)) == 1 and shortfalls[0] > 0
        note("shortfall", held, f"{expect.shortfall}: window counts {sorted(set(shortfalls))}")
    if expect.configured_equals_demand:
        note(
            "configured_equals_demand",
            last.configured == last.demand,
            f"Configured {last.configured}, demand {last.demand} machines",
        )
    pods = last.pods or {}
    if expect.bound_ratio_min is not None:
        ratio = pods.get("bound", 0) / pods["target"] if pods.get("target") else 1.0
        note(
            "bound_ratio_min",
            ratio >= expect.bound_ratio_min,
            f"{pods.get('bound', 0)} of {pods.get('target', 0)} target Pods bound "
            f"({ratio:.2%}; at least {expect.bound_ratio_min:.0%})",
        )
    if expect.live_equals_target:
        note(
            "live_equals_target",
            pods.get("live") == pods.get("target"),
            f"{pods.get('live', 0)} live Pods for a target of {pods.get('target', 0)}",
        )
    if expect.probe_zero:
        probe = sum(field(c, "probe") for c in window)
        note("probe_zero", probe == 0, f"{probe} reclaims of wanted machines in the window")
    if expect.gangs_never_scatter:
        worst = max(field(c, "scattered") for c in counts)
        note("gangs_never_scatter", worst == 0, f"at most {worst} gangs scattered in a cycle")
    if expect.actions is not None:
        want: dict[str, int] = {str(k): v for k, v in expect.actions.items()}
        totals = {kind: sum(c.actions[kind] for c in counts) for kind in want}
        note("actions", totals == want, f"want {want}, have {totals}")
    if expect.evictions is not None:
        evicted = sum(field(c, "evicted") for c in counts)
        note("evictions", evicted == expect.evictions, f"want {expect.evictions}, have {evicted}")
    for cycle, wanted in sorted((expect.at_cycle or {}).items()):
        if not 1 <= cycle <= len(counts):
            note(f"at_cycle.{cycle}", False, f"the run has {len(counts)} cycles")
            continue
        wanted_here: dict[str, int] = {str(k): v for k, v in wanted.items()}
        seen = {name: field(counts[cycle - 1], name) for name in wanted_here}
        note(f"at_cycle.{cycle}", seen == wanted_here, f"want {wanted_here}, have {seen}")
    if expect.bound_per_workload is not None:
        by = report["pods"]["bound_per_workload"]
        bound = {w: by.get(w, 0) for w in expect.bound_per_workload}
        want_bound = dict(expect.bound_per_workload)
        note("bound_per_workload", bound == want_bound, f"want {want_bound}, have {bound}")
    if expect.configured_by_tier is not None:
        tiers = report["configured_by_tier"]
        want_tiers: dict[str, int] = {str(k): v for k, v in expect.configured_by_tier.items()}
        by_tier = {t: tiers.get(t, 0) for t in want_tiers}
        note("configured_by_tier", by_tier == want_tiers, f"want {want_tiers}, have {by_tier}")

    if expect.canary is None:
        return results, [f"{r['condition']}: {r['detail']}" for r in results if not r["held"]]
    signature, detail = _signature(expect.canary, counts, window)
    results.insert(0, {"condition": f"canary {expect.canary}", "held": signature, "detail": detail})
    problems = [] if signature else [f"canary {expect.canary} did not show: {detail}"]
    problems += [
        f"{r['condition']} held, but the canary must break it: {r['detail']}"
        for r in results[1:]
        if r["held"]
    ]
    return results, problems


def _signature(
    kind: str, counts: Sequence[CycleCounts], window: Sequence[CycleCounts]
) -> tuple[bool, str]:
    if kind == "cascades":
        reclaim_cycles = sum(1 for c in counts if c.actions["Reclaim"])
        pods = counts[-1].pods or {}
        destroyed = pods.get("live", 0) < pods.get("target", 0)
        return (
            destroyed and reclaim_cycles >= CASCADE_RECLAIM_CYCLES,
            f"{pods.get('live', 0)} live of {pods.get('target', 0)} target Pods; "
            f"reclaims in {reclaim_cycles} cycles (cascade: fewer live, at least "
            f"{CASCADE_RECLAIM_CYCLES} cycles)",
        )
    reclaims = sum(c.actions["Reclaim"] for c in window)
    acquired = sum(c.actions["Bootstrap"] + c.actions["Provision"] for c in window)
    return (
        reclaims >= OSCILLATION_ACTIONS and acquired >= OSCILLATION_ACTIONS,
        f"{reclaims} reclaims and {acquired} acquisitions in the window "
        f"(oscillation: at least {OSCILLATION_ACTIONS} each)",
    )
