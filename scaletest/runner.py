"""One scale-test run: install, wait for steady state, soak (churn and the profile's
actions), measure, judge, and always tear down.

The verdict is in `summary.json` (and the exit code of `bigfleet scaletest`): the
run passes when it settled, every fired action's assertion held, and every gate
that could be measured holds. Beside it, `metrics.json` keeps every process's
metrics at the start and the end of the soak.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import kr8s.asyncio

from bigfleet.controlplane.process import ProcessFailed
from bigfleet.scaletest import gates
from bigfleet.scaletest.load import Census, Load
from bigfleet.scaletest.profile import Action, Profile
from bigfleet.scaletest.scrape import Snapshot, read
from bigfleet.scaletest.substrate import LocalSubstrate
from bigfleet.scaletest.timeline import Timeline
from bigfleet.scaletest.write_probe import WriteProbe
from bigfleet.wire import provider_pb2

log = logging.getLogger(__name__)
Report = Callable[[str], None]
CONFIGURED = provider_pb2.MACHINE_STATE_CONFIGURED


class RunFailed(Exception):
    """The run cannot go on; the message says what did not happen."""


@dataclass
class ActionRecord:
    action: str
    at_seconds: float
    fired_at: float | None = None  # seconds into the soak
    fire_error: str = ""
    assertion: str = ""
    asserted: bool | None = None
    assert_error: str = ""
    measured: dict[str, float] = field(default_factory=dict)  # what the checks counted


@dataclass(frozen=True)
class Outcome:
    passed: bool
    summary: dict[str, Any]
    summary_path: Path


def _cycles(snapshot: Snapshot) -> float:
    return snapshot.total("shard", "bigfleet_shard_cycle_duration_seconds_count") or 0.0


def _shard_figures(snapshot: Snapshot) -> tuple[float | None, float | None, float]:
    """Shortfalls, demand rows and acquisitions so far, as the shard reports them."""
    acquired = sum(
        snapshot.total("shard", "bigfleet_shard_actions_total", kind=kind) or 0
        for kind in gates.ACQUISITIONS
    )
    return (
        snapshot.total("shard", "bigfleet_shard_shortfalls"),
        snapshot.total("shard", "bigfleet_shard_demand_machines"),
        acquired,
    )


class Run:
    def __init__(
        self, profile: Profile, substrate: LocalSubstrate, soak_s: float, report: Report
    ) -> None:
        self.profile = profile
        self.substrate = substrate
        self.soak_s = soak_s
        self.report = report
        self.records: list[ActionRecord] = []
        self.metrics: dict[str, float] = {}
        self.judged: list[gates.Gate] = []
        self.timings: dict[str, float] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.timeline = Timeline()

    async def _shard(self) -> Snapshot:
        return await asyncio.to_thread(read, {"shard": self.substrate.metrics_urls()["shard"]})

    async def drive(self) -> None:
        apis = {
            cluster: await kr8s.asyncio.api(kubeconfig=str(path))
            for cluster, path in self.substrate.kubeconfigs().items()
        }
        load = Load(self.profile, apis, seed=0)
        ramp_s = self.profile.ramp_s
        self.report(
            f"installing {len(self.profile.workloads)} workloads per cluster"
            + (f", growing to full size over {ramp_s:.0f}s" if ramp_s else "")
        )
        await load.install(0.0 if ramp_s else 1.0)
        sampling = asyncio.create_task(
            self.timeline.follow(load.census, self._shard, self.profile.steady.poll)
        )
        ramping = asyncio.create_task(load.ramp(ramp_s)) if ramp_s else None
        try:
            began = time.monotonic()
            await self.settle(ramping)
            self.timings["settleSeconds"] = round(time.monotonic() - began, 1)
            if ramp_s:
                self.timings["rampSeconds"] = ramp_s  # the part of settling spent growing
            urls = self.substrate.metrics_urls()
            start = await asyncio.to_thread(read, urls)
            began, soak_began = time.monotonic(), int(time.time())  # API stamps: whole s
            self.timeline.phase = "soak"
            await self.soak(load)
            self.timings["soakSeconds"] = round(time.monotonic() - began, 1)
            end = await asyncio.to_thread(read, urls)
        finally:
            background = [t for t in (sampling, ramping) if t is not None]
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        self.snapshots = {"start": start, "end": end}
        census = await load.census()
        self.metrics = gates.figures(
            start, end, census, self.profile.target_pods, soak_began=soak_began
        )
        self.judged = gates.judge(self.profile.gates, self.metrics)

    async def settle(self, ramping: asyncio.Task[None] | None = None) -> Census:
        """Until active requests reach the target, the shard reports demand and no
        shortfall, and acquisitions stay flat for `flatPolls` polls. The timeout counts
        from the start of the ramp (`ramping`, growing the load meanwhile)."""
        steady, target = self.profile.steady, self.profile.target_pods
        deadline = time.monotonic() + self.profile.ramp_s + steady.timeout
        flat, last_acquired = 0, -1.0
        frozen_since: float | None = None  # a shortfall with no acquisition since
        while True:
            census = await self.timeline.next()
            if ramping is not None and ramping.done() and ramping.exception() is not None:
                raise RunFailed(f"the load did not grow: {ramping.exception()!r}")
            shortfalls, demand, acquired = _shard_figures(await self._shard())
            flat = flat + 1 if acquired == last_acquired else 0
            last_acquired = acquired
            self.report(
                f"settling: {len(census.bound):,}/{target:,} Pods bound, "
                f"{census.requests:,} CapacityRequests, shortfalls {shortfalls}, "
                f"acquisitions {acquired:.0f} (flat for {flat} polls)"
            )
            if (
                census.requests >= 0.999 * target
                and demand
                and shortfalls == 0
                and flat >= steady.flat_polls
            ):
                return census
            now = time.monotonic()
            frozen_since = (frozen_since or now) if shortfalls and flat else None
            if frozen_since is not None and now - frozen_since >= steady.standing_shortfall:
                raise RunFailed(
                    f"{shortfalls:.0f} shortfalls stood for {steady.standing_shortfall:.0f}s "
                    "with no acquisition: the fleet cannot cover the demand"
                )
            if now > deadline:
                raise RunFailed(
                    f"not settled within {steady.timeout:.0f}s: {len(census.bound)}/{target} "
                    f"Pods bound, {census.requests} CapacityRequests, shortfalls {shortfalls}"
                )

    async def soak(self, load: Load) -> None:
        target = self.profile.target_pods
        pending = sorted(self.profile.actions, key=lambda a: a.at)
        began = last = time.monotonic()
        owed = 0.0  # evictions due but not yet made (churn runs in whole Pods)
        while (elapsed := time.monotonic() - began) < self.soak_s:
            if pending and elapsed >= pending[0].at:
                self.timeline.fault = pending[0].name
                try:
                    self.records.append(await self.fire(pending.pop(0), load, elapsed))
                finally:
                    self.timeline.fault = ""
                last = time.monotonic()  # no churn owed for the time the action took
                continue
            census = await self.timeline.next()
            now = time.monotonic()
            owed += self.profile.churn_per_minute * target * (now - last) / 60
            last = now
            if owed >= 1:
                evicted = await load.churn(int(owed), census)
                owed -= int(owed)
                self.report(f"soak {elapsed:.0f}/{self.soak_s:.0f}s: evicted {evicted} Pods")
            else:
                self.report(f"soak {elapsed:.0f}/{self.soak_s:.0f}s")
        for action in pending:  # the soak was too short for it
            self.records.append(
                ActionRecord(action.name, action.at, fire_error="the soak ended first")
            )

    async def fire(self, action: Action, load: Load, elapsed: float) -> ActionRecord:
        record = ActionRecord(action.name, action.at, fired_at=round(elapsed, 1))
        before = await self.timeline.next()
        machines = await self.substrate.machines()
        terms = await asyncio.to_thread(self.substrate.coordinator_terms)
        probe = self._write_probe(action)
        writing = None
        if probe is not None:
            await probe.register()
            writing = asyncio.create_task(probe.keep_writing(self.profile.steady.poll / 4))
        problems = []
        try:
            if action.kill is not None:
                self.report(f"soak {elapsed:.0f}s: SIGKILL {action.kill}")
                await asyncio.to_thread(self.substrate.kill, action.kill)
                await asyncio.sleep(action.restart_after)
                self.report(f"restarting {action.kill}")
                await asyncio.to_thread(self.substrate.restart, action.kill)
            else:
                self.report(f"soak {elapsed:.0f}s: {action.name} for {action.lasts:.0f}s")
                problems += await self.partitioned(action, record)
        except (ProcessFailed, OSError) as err:
            record.fire_error = str(err)
            if writing is not None:
                writing.cancel()
            return record
        record.assertion = (
            f"demand covered again within {action.recover_within:.0f}s; no running Pod "
            "disturbed; no Node lost; no machine lost, moved or owned twice"
        )
        if action.partition:
            record.assertion = (
                "the shard kept cycling and stayed healthy while cut off; " + record.assertion
            )
        if action.kill == "coordinator-leader":
            record.assertion += "; a new leader with a higher term applies the shard's reports"
            problems += await self.new_leader(action, max(terms.values(), default=0.0))
        problems += await self.recovered(action, load, before, machines)
        if probe is not None and writing is not None:
            record.assertion += "; every acknowledged coordinator write kept"
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)
            problems += await self.writes_kept(probe, record)
        record.asserted = not problems
        record.assert_error = "; ".join(problems)
        return record

    def _write_probe(self, action: Action) -> WriteProbe | None:
        """Coordinator kills write through the failover and check the writes were kept."""
        if action.kill not in ("coordinator", "coordinator-leader"):
            return None
        return WriteProbe(self.substrate.coordinator_addresses())

    async def writes_kept(self, probe: WriteProbe, record: ActionRecord) -> list[str]:
        record.measured["coordinatorWritesTried"] = probe.attempts
        record.measured["coordinatorWritesAcknowledged"] = len(probe.acknowledged)
        if not probe.acknowledged:
            return [f"no coordinator write was acknowledged ({probe.attempts} tried)"]
        try:
            lost = await probe.lost()
        except grpc.aio.AioRpcError as err:
            return [f"the coordinator's domains could not be read: {err.details()}"]
        record.measured["coordinatorWritesLost"] = len(lost)
        if lost:
            return [
                f"{len(lost)} of {len(probe.acknowledged)} acknowledged coordinator writes lost "
                f"(e.g. {lost[0]})"
            ]
        return []

    async def partitioned(self, action: Action, record: ActionRecord) -> list[str]:
        """Cut the links for `lasts`, then heal. Meanwhile the shard must keep deciding
        (static stability: it needs neither to cycle) and keep passing its liveness
        probe, or Kubernetes would restart it for a network fault."""
        cycles = _cycles(await self._shard())
        await asyncio.to_thread(self.substrate.partition, action.partition, True)
        try:
            await asyncio.sleep(action.lasts)
            healthy = await asyncio.to_thread(self.substrate.healthy, "shard")
            ran = _cycles(await self._shard()) - cycles
        finally:
            self.report(f"healing {action.name}")
            await asyncio.to_thread(self.substrate.partition, action.partition, False)
        problems = []
        record.measured["shardCyclesWhileCut"] = ran
        expected = action.lasts / max(self.profile.cycle_interval_s, 0.001)
        if ran < expected / 2:
            problems.append(
                f"the shard ran {ran:.0f} cycles while cut off for {action.lasts:.0f}s "
                f"(about {expected:.0f} expected)"
            )
        if not healthy:
            problems.append("the shard's liveness probe failed while cut off")
        return problems

    async def new_leader(self, action: Action, old_term: float) -> list[str]:
        """A replica leads with a term above `old_term`, and its successful writes grow
        (the shard's heartbeats reach it)."""
        deadline = time.monotonic() + action.recover_within
        applied: dict[str, float] = {}
        while time.monotonic() < deadline:
            terms = await asyncio.to_thread(self.substrate.coordinator_terms)
            leaders = [name for name, term in terms.items() if term > old_term]
            if leaders:
                urls = {leaders[0]: self.substrate.metrics_urls()[leaders[0]]}
                snapshot = await asyncio.to_thread(read, urls)
                done = snapshot.total(
                    leaders[0], "bigfleet_coordinator_apply_total", outcome="success"
                )
                if done is not None and applied.get(leaders[0], done) < done:
                    return []
                if done is not None:
                    applied[leaders[0]] = done
            await asyncio.sleep(self.profile.steady.poll)
        return [
            f"no new coordinator leader (term above {old_term:.0f}) applied writes within "
            f"{action.recover_within:.0f}s"
        ]

    async def recovered(
        self, action: Action, load: Load, before: Census, machines: dict[str, tuple[int, str]]
    ) -> list[str]:
        # Covered again: as many Pods bound as before the kill, and no shortfall. Not every
        # target Pod: demand travels as aggregates, so a Pod the scheduler cannot fit
        # into the fragments left on the machines may stay Pending before and after.
        deadline = time.monotonic() + action.recover_within
        while True:
            after = await self.timeline.next()
            shortfalls, _, _ = _shard_figures(await self._shard())
            if len(after.bound) >= len(before.bound) and shortfalls == 0:
                break
            if time.monotonic() > deadline:
                return [
                    f"not covered within {action.recover_within:.0f}s: {len(after.bound)} "
                    f"Pods bound (before the kill: {len(before.bound)}), shortfalls {shortfalls}"
                ]
        problems = []
        moved = [
            key
            for key, node in before.bound.items()
            if key not in load.evicted and after.bound.get(key) != node
        ]
        if moved:
            problems.append(f"{len(moved)} running Pods disturbed (e.g. {moved[0]})")
        if lost := before.nodes - after.nodes:
            problems.append(f"{len(lost)} Nodes lost (e.g. {min(lost)})")
        names = [n.split("/", 1)[1] for n in after.nodes]
        if twice := {n for n in names if names.count(n) > 1}:
            problems.append(f"{len(twice)} machines joined two clusters (e.g. {min(twice)})")
        now = await self.substrate.machines()
        if gone := set(machines) - set(now):
            problems.append(f"{len(gone)} machines lost (e.g. {min(gone)})")
        if not self.profile.churn_per_minute:  # at constant demand nothing should move
            shifted = [
                m
                for m, (state, cluster) in machines.items()
                if state == CONFIGURED and now.get(m) != (CONFIGURED, cluster)
            ]
            if shifted:
                problems.append(f"{len(shifted)} Configured machines moved (e.g. {shifted[0]})")
        return problems


def run(
    profile: Profile, output: Path, *, soak_s: float | None = None, report: Report = print
) -> Outcome:
    """Run `profile` on the local substrate; everything it writes goes under `output`."""
    output.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    run_id = f"{profile.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    substrate = LocalSubstrate(profile, output / "work")
    the_run = Run(profile, substrate, profile.soak_s if soak_s is None else soak_s, report)
    failures: list[str] = []
    try:
        report(f"starting {profile.clusters} control planes and the BigFleet processes")
        substrate.start()
        asyncio.run(the_run.drive())
    except RunFailed as err:
        failures.append(str(err))
    except ProcessFailed as err:
        failures.append(f"a process did not start: {err}")
    except KeyboardInterrupt:
        failures.append("interrupted")
        raise
    except Exception as err:  # the harness's own failure: still judged, torn down, written
        log.exception("the scale-test runner failed")
        failures.append(f"the runner failed: {type(err).__name__}: {err}")
    finally:
        report("tearing down")
        substrate.stop()
        summary = _summary(run_id, profile, the_run, failures, time.monotonic() - began)
        summary["timelineNotWritten"] = the_run.timeline.write(output, run_id)
        path = output / "summary.json"
        path.write_text(json.dumps(summary, indent=2) + "\n")
        if the_run.snapshots:
            snapshots = {k: s.to_json() for k, s in the_run.snapshots.items()}
            (output / "metrics.json").write_text(json.dumps(snapshots, indent=1) + "\n")
    return Outcome(bool(summary["passed"]), summary, path)


def _summary(
    run_id: str, profile: Profile, the_run: Run, failures: list[str], took_s: float
) -> dict[str, Any]:
    failures = list(failures)
    for record in the_run.records:
        if record.fire_error:
            failures.append(f"{record.action}: {record.fire_error}")
        elif record.asserted is False:
            failures.append(f"{record.action}: {record.assert_error}")
    failures += [
        f"{g.name} = {g.value} (must be {g.op} {g.threshold})"
        for g in the_run.judged
        if not g.passed
    ]
    if not the_run.metrics and not failures:
        failures.append("no figures were measured")
    return {
        "runId": run_id,
        "profile": profile.name,
        "target": {"kind": LocalSubstrate.kind},
        "scale": {
            "clusters": profile.clusters,
            "totalPods": profile.target_pods,
            "seedMachines": sum(p.count for p in profile.fleet.pools),
        },
        "durations": the_run.timings | {"totalSeconds": round(took_s, 1)},
        "metrics": the_run.metrics,
        "gates": [gates.as_json(g) for g in the_run.judged],
        "unmeasuredSLOs": gates.unmeasured(profile.gates, the_run.metrics),
        "runnerActions": [asdict(r) for r in the_run.records],
        "passed": not failures,
        "failure": failures[0] if failures else "",
        "failures": failures,
    }
