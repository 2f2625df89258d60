"""`bigfleet shard`: run one shard process."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled
from bigfleet.shard.engine.settings import (
    CAPACITY_TYPE_NAMES,
    DEFAULT_IDLE_HOLD_S,
    EngineSettings,
    RailSettings,
    SettingError,
    VictimWeights,
    capacity_type_name,
    idle_holds,
)

if TYPE_CHECKING:
    from bigfleet.tls import TLSFiles

_DEFAULTS = EngineSettings()
_UNITS = {"s": 1, "m": 60, "h": 3600}


def _duration(seconds: float) -> str:
    """600.0 -> 10m, 60.0 -> 1m, 90.0 -> 90s: how a default is shown."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _pairs(value: str) -> list[tuple[str, str]]:
    """Split `a=1,b=2` into [("a", "1"), ("b", "2")]; ValueError on an item without `=`."""
    pairs = []
    for item in value.split(","):
        name, sep, text = item.strip().partition("=")
        if not sep or not name.strip() or not text.strip():
            raise ValueError(f"{item.strip()!r} is not NAME=VALUE")
        pairs.append((name.strip(), text.strip()))
    return pairs


class IdleHoldType(click.ParamType[dict[str, float | None]]):
    """TYPE=DURATION[,...]: per capacity type, seconds (or 30s, 10m, 1h, never)."""

    name = "TYPE=DURATION[,...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, float | None]:
        if isinstance(value, dict):
            return value
        holds: dict[str, float | None] = {}
        try:
            for name, text in _pairs(str(value)):
                if name not in CAPACITY_TYPE_NAMES:
                    known = ", ".join(CAPACITY_TYPE_NAMES)
                    raise ValueError(f"no capacity type {name!r}; known: {known}")
                holds[name] = None if text == "never" else self._seconds(text)
        except ValueError as err:
            self.fail(str(err), param, ctx)
        return holds

    @staticmethod
    def _seconds(text: str) -> float:
        size = _UNITS.get(text[-1], 0)
        number = text[:-1] if size else text
        try:
            seconds = float(number) * (size or 1)
        except ValueError:
            raise ValueError(f"{text!r} is not a duration (600, 30s, 10m, 1h or never)") from None
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"{text!r}: a hold is a finite duration of at least 0")
        return seconds


class WeightsType(click.ParamType[dict[str, float]]):
    """NAME=WEIGHT[,...] over priority, drain, interruption, reclamation."""

    name = "NAME=WEIGHT[,...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, float]:
        if isinstance(value, dict):
            return value
        known = set(VictimWeights.__dataclass_fields__)
        weights: dict[str, float] = {}
        try:
            for name, text in _pairs(str(value)):
                if name not in known:
                    raise ValueError(f"no weight {name!r}; known: {', '.join(sorted(known))}")
                try:
                    weights[name] = float(text)
                except ValueError:
                    raise ValueError(f"{name}={text!r} is not a number") from None
            VictimWeights(**weights)
        except ValueError as err:
            self.fail(str(err).removeprefix("victim_weights."), param, ctx)
        return weights


def _show_holds(holds: Mapping[Any, float]) -> str:
    return ",".join(f"{capacity_type_name(t)}={_duration(s)}" for t, s in sorted(holds.items()))


_WEIGHTS_DEFAULT = ",".join(
    f"{name}={getattr(_DEFAULTS.victim_weights, name):g}"
    for name in VictimWeights.__dataclass_fields__
)

# The flag each engine setting comes from, to name it when the settings refuse a value.
FLAG_FOR_SETTING = {
    "idle_hold_s": "--idle-hold",
    "victim_weights": "--victim-weights",
    "drain_estimate_s": "--drain-estimate",
    "reclaim_grace_s": "--reclaim-grace",
    "same_park_after_cycles": "--same-park-after",
    "same_reprobe_every_cycles": "--same-reprobe-every",
    "rails": "--reclaim-cap-fraction / --max-actions-per-cycle",
}


def engine_settings(
    *,
    rails: RailSettings,
    idle_hold: Mapping[str, float | None],
    victim_weights: Mapping[str, float],
    drain_estimate: float,
    reclaim_grace: int,
    same_park_after: int,
    same_reprobe_every: int,
) -> EngineSettings:
    """The engine's settings from the shard's flags; BadParameter names the flag at fault."""
    try:
        return EngineSettings(
            rails=rails,
            idle_hold_s=idle_holds(idle_hold),
            victim_weights=VictimWeights(**victim_weights),
            drain_estimate_s=drain_estimate,
            reclaim_grace_s=reclaim_grace,
            same_park_after_cycles=same_park_after,
            same_reprobe_every_cycles=same_reprobe_every,
        )
    except SettingError as err:
        field = err.name.partition(".")[0].partition("[")[0]
        raise click.BadParameter(str(err), param_hint=FLAG_FOR_SETTING.get(field)) from err


def _default_id() -> str | None:
    """shard-<ordinal> from a StatefulSet pod name (HOSTNAME=bigfleet-shard-2 gives shard-2)."""
    match = re.search(r"-(\d+)$", os.environ.get("HOSTNAME", ""))
    return f"shard-{match.group(1)}" if match else None


@click.command()
@click.option(
    "--id",
    "shard_id",
    envvar="BIGFLEET_SHARD_ID",
    default=_default_id,
    help="Shard id [default: shard-<ordinal> from a StatefulSet pod's HOSTNAME].",
)
@click.option(
    "--listen",
    default="0.0.0.0:7780",
    show_default=True,
    help="HOST:PORT for Shard.Session (operators dial it).",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    required=True,
    metavar="NAME=HOST:PORT",
    help="A capacity provider to dial; repeat for several.",
)
@options.metrics_port(8780, "/metrics, /healthz and /readyz")
@click.option(
    "--data-dir",
    default=Path("./data"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the epoch is persisted (a PVC in Kubernetes).",
)
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="Publish a Shard resource and apply its spec; without one the shard runs "
    "the same, without the resource.",
)
@options.in_cluster
@click.option(
    "--cycle-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between decision cycles (a demand change runs one earlier).",
)
@click.option(
    "--execute-concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Actions executed at once.",
)
@click.option(
    "--bootstrap-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds to wait for an operator's join blob before rolling back.",
)
@click.option(
    "--reclaim-cap-fraction",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Reclaims per cluster per cycle as a fraction of its Configured; 0 = no cap.",
)
@click.option(
    "--idle-hold",
    default=_show_holds(DEFAULT_IDLE_HOLD_S),
    show_default=True,
    type=IdleHoldType(),
    help="How long an unclaimed Idle machine is kept before it is released, per capacity "
    f"type ({', '.join(CAPACITY_TYPE_NAMES)}): seconds, or with s, m, h; 'never' keeps it. "
    "Types not named keep their default; without one a type is never released.",
)
@click.option(
    "--victim-weights",
    default=_WEIGHTS_DEFAULT,
    show_default=True,
    type=WeightsType(),
    help="Phase 2's victim score weights (priority gap, drain speed, interruption and "
    "reclamation penalty); weights not named keep their default.",
)
@click.option(
    "--drain-estimate",
    default=_DEFAULTS.drain_estimate_s,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds one victim is estimated to take to drain, in Phase 2's score.",
)
@click.option(
    "--reclaim-grace",
    default=_DEFAULTS.reclaim_grace_s,
    show_default=True,
    type=click.IntRange(0),
    help="Grace seconds a Phase 3 reclaim of excess capacity drains with.",
)
@click.option(
    "--same-park-after",
    default=_DEFAULTS.same_park_after_cycles,
    show_default=True,
    type=click.IntRange(1),
    help="Cycles a co-location need may stay stuck before its acquisition is parked.",
)
@click.option(
    "--same-reprobe-every",
    default=_DEFAULTS.same_reprobe_every_cycles,
    show_default=True,
    type=click.IntRange(1),
    help="A parked co-location need is tried again on every this-many-th cycle of its age.",
)
@click.option(
    "--empty-rollup-guard/--no-empty-rollup-guard",
    default=True,
    show_default=True,
    help="Hold a roll-up that suddenly drops most of a cluster's demand.",
)
@click.option("--pause-acquisitions", is_flag=True, help="Start with acquisitions paused.")
@click.option("--pause-reclaims", is_flag=True, help="Start with reclaims paused.")
@click.option("--dry-run", is_flag=True, help="Decide every cycle, execute nothing.")
@click.option(
    "--max-actions-per-cycle",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Execute at most this many actions a cycle; 0 = unlimited.",
)
@click.option(
    "--cluster",
    "clusters",
    multiple=True,
    help="Serve only these cluster ids (repeat); default: any.",
)
@click.option(
    "--incremental-reconcile",
    is_flag=True,
    help="List with since_revision cursors (cannot see removed machines).",
)
@click.option(
    "--coordinator-addr",
    default=None,
    metavar="HOST:PORT[,...]",
    help="Report to the coordinator; name every replica, the leader is found among them. "
    "Without it the shard runs on its own.",
)
@click.option(
    "--coordinator-heartbeat-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between coordinator reports.",
)
@click.option(
    "--advertise-addr",
    default="",
    metavar="HOST:PORT",
    help="The address reported to the coordinator [default: --listen].",
)
@click.option(
    "--max-frame-bytes",
    default=16 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest operator frame; a larger one ends its stream (RESOURCE_EXHAUSTED).",
)
@click.option(
    "--max-clusters",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Distinct clusters the shard holds; a Hello for one more is RESOURCE_EXHAUSTED.",
)
@click.option(
    "--cluster-retention",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a disconnected cluster's session state and metric series are kept "
    "(its machines stay).",
)
@click.option(
    "--max-needs-per-rollup",
    default=50_000,
    show_default=True,
    type=click.IntRange(1),
    help="Needs in one roll-up; a longer roll-up is refused whole (INVALID_ARGUMENT).",
)
@options.tls
@options.shutdown_timeout
def shard(
    shard_id: str | None,
    listen: str,
    providers: tuple[str, ...],
    metrics_port: int,
    data_dir: Path,
    kubeconfig: str | None,
    in_cluster: bool,
    cycle_interval: float,
    execute_concurrency: int,
    bootstrap_timeout: float,
    reclaim_cap_fraction: float,
    idle_hold: dict[str, float | None],
    victim_weights: dict[str, float],
    drain_estimate: float,
    reclaim_grace: int,
    same_park_after: int,
    same_reprobe_every: int,
    empty_rollup_guard: bool,
    pause_acquisitions: bool,
    pause_reclaims: bool,
    dry_run: bool,
    max_actions_per_cycle: int,
    clusters: tuple[str, ...],
    incremental_reconcile: bool,
    coordinator_addr: str | None,
    coordinator_heartbeat_interval: float,
    advertise_addr: str,
    max_frame_bytes: int,
    max_clusters: int,
    cluster_retention: float,
    max_needs_per_rollup: int,
    tls: TLSFiles | None,
    shutdown_timeout: float,
) -> None:
    """Run a shard: Session server, decision engine, provider reconcile and execution.

    Static stability: it needs no coordinator; it provisions from what it owns.

    With --tls-cert/--tls-key/--tls-ca (all three) every edge is mutual TLS: the
    certificate must name bigfleet://shard/<id>; it serves Sessions (to
    bigfleet://cluster/<id> certificates, each for its own cluster only) and is
    presented to providers and the coordinator.
    """
    from bigfleet.shard import app
    from bigfleet.shard.runtime.provider import parse_provider_flag

    if not shard_id:
        raise click.UsageError("--id is required outside a StatefulSet pod")
    try:
        parsed = tuple(parse_provider_flag(p) for p in providers)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--provider") from err
    engine = engine_settings(
        rails=RailSettings(
            reclaim_cap_fraction=reclaim_cap_fraction,
            pause_acquisitions=pause_acquisitions,
            pause_reclaims=pause_reclaims,
            dry_run=dry_run,
            max_actions_per_cycle=max_actions_per_cycle,
        ),
        idle_hold=idle_hold,
        victim_weights=victim_weights,
        drain_estimate=drain_estimate,
        reclaim_grace=reclaim_grace,
        same_park_after=same_park_after,
        same_reprobe_every=same_reprobe_every,
    )
    settings = app.ShardSettings(
        shard_id=shard_id,
        listen=listen,
        providers=parsed,
        data_dir=data_dir,
        metrics_addr=options.metrics_address(listen.rpartition(":")[0], metrics_port),
        cycle_interval_s=cycle_interval,
        execute_concurrency=execute_concurrency,
        bootstrap_timeout_s=bootstrap_timeout,
        engine=engine,
        empty_rollup_guard=empty_rollup_guard,
        allowed_clusters=frozenset(clusters),
        incremental_reconcile=incremental_reconcile,
        advertise=advertise_addr,
        coordinator_addr=coordinator_addr or "",
        coordinator_heartbeat_s=coordinator_heartbeat_interval,
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        max_frame_bytes=max_frame_bytes,
        max_clusters=max_clusters,
        cluster_retention_s=cluster_retention,
        max_needs_per_rollup=max_needs_per_rollup,
        tls=tls,
    )
    try:
        until_signalled(lambda stop: app.run(settings, stop), shutdown_timeout)
    except app.ShardIdentityError as err:
        raise click.ClickException(str(err)) from err
