"""The closed loop (validation.md §2.1-§2.3): every catalog scenario meets the pass condition
its file declares, the canaries visibly break theirs, and the loop acts through the shard."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from bigfleet.cli import main
from bigfleet.shard.engine.machine import Machine
from bigfleet.shard.runtime.executor import Executor
from bigfleet.sim.closedloop import loop
from bigfleet.sim.closedloop.spec import ClosedLoopScenario, catalog, find
from bigfleet.sim.runner import RunResult

CATALOG = sorted(catalog())
CANARIES = [name for name in CATALOG if find(name).expect.canary is not None]
# Long runs, shortened here (cycles run); they still assert their declared invariants.
SHORTENED = {"cl-full-cardinality": 24}


def _run(name: str) -> RunResult:
    return loop.run(find(name), cycles=SHORTENED.get(name))


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_scenario_meets_its_declared_pass_condition(name: str) -> None:
    result = _run(name)
    assert result.problems == []
    assert result.report["conditions"], "a catalog scenario declares what it proves"
    times = result.report["cycle_time_ms"]
    assert set(times) == {"decision", "whole_cycle"}
    assert times["decision"]["p99"] >= times["decision"]["p50"] > 0


def test_the_catalog_covers_validation_2_3() -> None:
    assert set(CATALOG) >= {
        "cl-steady-state",
        "cl-canary-bare-pods",
        "cl-canary-bare-pods-twin",
        "cl-canary-unmet-only",
        "cl-canary-unmet-only-twin",
        "cl-gang-scatter",
        "cl-unsatisfiable-gang",
        "cl-sub-machine-gangs-round-robin",
        "cl-sub-machine-gangs-contiguous",
        "cl-bound-capacity-contract",
        "cl-shrinkage-reclaims-excess",
        "cl-oversized-contention",
        "cl-idle-release",
        "cl-incumbency-converged",
        "cl-acquisition-accounting",
        "cl-gang-dwell",
        "cl-cost-routing",
        "cl-full-cardinality",
    }
    full = find("cl-full-cardinality")
    needs = sum(
        c.count * sum(1 if w.shape in ("web", "api") else w.objects for w in c.workloads)
        for c in full.clusters
    )
    assert needs == 2580


@pytest.mark.parametrize("name", CANARIES)
def test_a_canary_visibly_breaks_every_invariant_it_names(name: str) -> None:
    conditions = _run(name).report["conditions"]
    signature, *rest = conditions
    assert signature["condition"].startswith("canary") and signature["held"]
    assert rest and not any(c["held"] for c in rest), rest


@pytest.mark.parametrize(
    ("canary", "fix"),
    [
        ("cl-canary-bare-pods", "managed"),
        ("cl-canary-unmet-only", "cr_per_pod"),
    ],
)
def test_a_canary_without_its_bug_fails_its_own_check(canary: str, fix: str) -> None:
    """The harness tells the bug from its absence: the canary's file with the bug undone
    shows no cascade or oscillation, so its check fails."""
    data = yaml.safe_load((catalog()[canary]).read_text())
    if fix == "managed":
        for cluster in data["clusters"]:
            for workload in cluster["workloads"]:
                workload["managed"] = True
    else:
        data["cr_per_pod"] = True
    result = loop.run(ClosedLoopScenario.model_validate(data))
    assert not result.ok
    assert any(
        p.startswith(f"canary {data['expect']['canary']} did not show") for p in result.problems
    )


def test_twins_pair_every_canary() -> None:
    for name in CANARIES:
        twin = find(f"{name}-twin")
        assert twin.expect.canary is None


def test_the_loop_acts_through_the_shards_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every action the closed loop counts went through the shard's own Executor.submit."""
    submitted: list[str] = []
    real = Executor.submit

    def spy(self: Executor, actions: list) -> None:  # type: ignore[type-arg]
        submitted.extend(a.kind.value for a in actions)
        real(self, actions)

    monkeypatch.setattr(Executor, "submit", spy)
    result = loop.run(find("cl-steady-state"), cycles=3)
    taken = sum(c.churn for c in result.counters)
    assert taken > 0 and len(submitted) >= taken
    source = Path(loop.__file__).read_text()
    for call in ("remove_machine(", "shard.cycle()"):
        assert call in source
    for copied in (".configure(", ".drain(", ".create(", ".delete("):
        assert copied not in source  # no second action path


def test_same_scenario_same_trace() -> None:
    first = loop.run(find("cl-steady-state"), cycles=5)
    again = loop.run(find("cl-steady-state"), cycles=5)
    assert first.trace.text() == again.trace.text()


def test_unknown_keys_are_refused_naming_the_field() -> None:
    data = yaml.safe_load(catalog()["cl-steady-state"].read_text())
    data["expect"]["quiescent_lasts"] = 3
    with pytest.raises(ValidationError, match="quiescent_lasts"):
        ClosedLoopScenario.model_validate(data)
    data = yaml.safe_load(catalog()["cl-steady-state"].read_text())
    data["pools"][0]["spot"] = 3
    with pytest.raises(ValidationError, match="spot"):
        ClosedLoopScenario.model_validate(data)


def test_cli_exits_1_listing_the_failed_conditions(tmp_path: Path) -> None:
    data = yaml.safe_load(catalog()["cl-steady-state"].read_text())
    data["cycles"] = 3
    data["expect"] = {"actions": {"Reclaim": 99}, "live_equals_target": True}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["sim", "run", str(path)])
    assert result.exit_code == 1, result.output
    assert "actions" in result.output and "failed" in result.output
    ok = CliRunner().invoke(main, ["sim", "run", "cl-steady-state", "--cycles", "25"])
    assert ok.exit_code == 0, ok.output


def test_plot_draws_pod_panels(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bigfleet.sim.report import panels

    result = loop.run(find("cl-steady-state"), cycles=4)
    titles = [p.title for p in panels(result)]
    assert any(t.startswith("Pods: bound") for t in titles)
    assert any(t.startswith("Pods: pending") for t in titles)
    out = tmp_path / "run.png"
    cli = CliRunner().invoke(
        main, ["sim", "run", "cl-steady-state", "--cycles", "25", "--plot", str(out)]
    )
    assert cli.exit_code == 0, cli.output
    assert out.stat().st_size > 0


@pytest.mark.python_engine
@pytest.mark.parametrize("layout", ["round-robin", "contiguous"])
def test_sub_machine_gangs_catch_the_claim_granularity_defect(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the engine crediting a folded gang's machines by resources again (the defect),
    the scenario fails: a gang stays pending with no shortfall to show for it."""
    from bigfleet.shard.engine.decision import phase1, phase2

    def by_resources(need: object, machine: Machine) -> object:
        return machine.alloc

    monkeypatch.setattr(phase1, "credit", by_resources)
    monkeypatch.setattr(phase2, "credit", by_resources)
    result = loop.run(find(f"cl-sub-machine-gangs-{layout}"))
    assert not result.ok
    assert any(p.startswith("configured_equals_demand") for p in result.problems)
