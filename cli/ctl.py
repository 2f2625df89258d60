"""`bigfleet ctl`: administer the coordinator over its gRPC service; read a shard's verdicts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import grpc

from bigfleet.cli import options
from bigfleet.timestamps import from_unix_ns
from bigfleet.wire import GRPC_OPTIONS, coordinator_pb2, coordinator_pb2_grpc

if TYPE_CHECKING:
    from bigfleet.tls import Credentials, TLSFiles

T = TypeVar("T")
Call = Callable[[coordinator_pb2_grpc.CoordinatorStub, float], T]


class Coordinators:
    """The replicas named on the command line; writes find whichever leads."""

    def __init__(
        self, addresses: Sequence[str], timeout_s: float, credentials: Credentials | None = None
    ) -> None:
        self.addresses = addresses
        self.timeout_s = timeout_s
        self.credentials = credentials  # mutual TLS (an admin or readonly certificate)

    def call(self, rpc: Call[T]) -> T:
        from bigfleet.tls import sync_channel

        refusals = []
        for address in self.addresses:
            with sync_channel(address, self.credentials, options=GRPC_OPTIONS) as channel:
                try:
                    return rpc(coordinator_pb2_grpc.CoordinatorStub(channel), self.timeout_s)
                except grpc.RpcError as err:
                    code, details = err.code(), err.details()
                    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
                        refusals.append(f"{address}: {details}")  # down or a follower: next one
                        continue
                    raise click.ClickException(f"{code.name}: {details}") from err
        raise click.ClickException("no coordinator took the call: " + "; ".join(refusals))


def _when(unix_ns: int) -> str:
    if not unix_ns:
        return "—"
    return from_unix_ns(unix_ns)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@click.group()
@click.option(
    "--coordinator",
    "addresses",
    default="127.0.0.1:7790",
    show_default=True,
    metavar="HOST:PORT[,...]",
    help="Coordinator replicas; a write goes to whichever leads.",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds per RPC.",
)
@options.tls
@click.pass_context
def ctl(ctx: click.Context, addresses: str, timeout: float, tls: TLSFiles | None) -> None:
    """Administer the coordinator: shards, domain assignments, reports.

    With --tls-cert, --tls-key and --tls-ca it dials mutual TLS: an admin
    certificate may do everything, a readonly one only the list commands.
    """
    from bigfleet.tls import load

    try:
        credentials = load(tls)
    except (OSError, ValueError) as err:
        raise click.UsageError(f"TLS files: {err}") from err
    addresses_given = [a.strip() for a in addresses.split(",") if a.strip()]
    ctx.obj = Coordinators(addresses_given, timeout, credentials)


@ctl.command("list-shards")
@click.pass_obj
def list_shards(coordinators: Coordinators) -> None:
    """Registered shards and their last heartbeat (UTC)."""
    reply = coordinators.call(
        lambda stub, t: stub.ListShards(coordinator_pb2.ListShardsRequest(), timeout=t)
    )
    _table(
        ["SHARD", "ADDRESS", "REGISTERED", "LAST_HEARTBEAT"],
        [
            [
                s.shard_id,
                s.address or "—",
                _when(s.registered_at_unix_ns),
                _when(s.last_heartbeat_unix_ns),
            ]
            for s in reply.shards
        ],
    )


@ctl.command("list-domain-assignments")
@click.pass_obj
def list_domain_assignments(coordinators: Coordinators) -> None:
    """Which shard owns each topology domain."""
    reply = coordinators.call(
        lambda stub, t: stub.ListDomainAssignments(
            coordinator_pb2.ListDomainAssignmentsRequest(), timeout=t
        )
    )
    _table(
        ["TOPOLOGY_KEY", "TOPOLOGY_VALUE", "SHARD"],
        [[a.topology_key, a.topology_value, a.shard_id] for a in reply.assignments],
    )


@ctl.command("list-shard-reports")
@click.option("--shard", default="", help="Only this shard.")
@click.pass_obj
def list_shard_reports(coordinators: Coordinators, shard: str) -> None:
    """The leader's latest report per shard (empty right after a failover)."""
    request = coordinator_pb2.ListShardReportsRequest(shard_id=shard)
    reply = coordinators.call(lambda stub, t: stub.ListShardReports(request, timeout=t))
    _table(
        ["SHARD", "CYCLE", "RECEIVED", "MACHINES", "FREE", "SHORTFALLS"],
        [
            [
                r.shard_id,
                r.cycle,
                _when(r.received_at_unix_ns),
                r.summary.total_machines,
                r.summary.free_machines,
                len(r.shortfalls),
            ]
            for r in reply.reports
        ],
    )


@ctl.command("assign-domain")
@click.option("--key", required=True, help="Topology label key, e.g. topology.kubernetes.io/zone.")
@click.option("--value", required=True, help="Label value, e.g. eu-west-1a.")
@click.option("--shard", required=True, help="The shard that will own the domain.")
@click.pass_obj
def assign_domain(coordinators: Coordinators, key: str, value: str, shard: str) -> None:
    """Give a topology domain to a shard (a no-op if it already owns it)."""
    request = coordinator_pb2.AssignDomainRequest(
        topology_key=key, topology_value=value, shard_id=shard
    )
    coordinators.call(lambda stub, t: stub.AssignDomain(request, timeout=t))
    click.echo(f"{key}={value} -> {shard}")


@ctl.command("unassign-domain")
@click.option("--key", required=True, help="Topology label key.")
@click.option("--value", required=True, help="Label value.")
@click.pass_obj
def unassign_domain(coordinators: Coordinators, key: str, value: str) -> None:
    """Release a topology domain from its shard."""
    request = coordinator_pb2.UnassignDomainRequest(topology_key=key, topology_value=value)
    coordinators.call(lambda stub, t: stub.UnassignDomain(request, timeout=t))
    click.echo(f"{key}={value} unassigned")


@ctl.command("remove-shard")
@click.option("--shard", required=True, help="The shard to remove.")
@click.pass_obj
def remove_shard(coordinators: Coordinators, shard: str) -> None:
    """Remove a shard and the domains it owned."""
    request = coordinator_pb2.RemoveShardRequest(shard_id=shard)
    coordinators.call(lambda stub, t: stub.RemoveShard(request, timeout=t))
    click.echo(f"shard {shard} removed")


@ctl.command("list-quotas")
@click.pass_obj
def list_quotas(coordinators: Coordinators) -> None:
    """Quota slots moved between shards by rebalancing, per provider and region."""
    reply = coordinators.call(
        lambda stub, t: stub.ListQuotas(coordinator_pb2.ListQuotasRequest(), timeout=t)
    )
    _table(
        ["PROVIDER", "REGION", "SHARD", "SLOTS"],
        [
            [a.provider, a.region or "-", shard, slots]
            for a in reply.allocations
            for shard, slots in sorted(a.per_shard.items())
        ],
    )


@ctl.command("list-providers")
@click.pass_obj
def list_providers(coordinators: Coordinators) -> None:
    """Capacity providers the shards report."""
    reply = coordinators.call(
        lambda stub, t: stub.ListProviders(coordinator_pb2.ListProvidersRequest(), timeout=t)
    )
    _table(
        ["NAME", "ADDRESS", "REGION"],
        [[p.name, p.address, p.region or "-"] for p in reply.providers],
    )


@ctl.command("snapshot-save")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def snapshot_save(coordinators: Coordinators, path: Path) -> None:
    """Write a consistent export of the coordinator's tables to PATH (JSON)."""

    def save(stub: coordinator_pb2_grpc.CoordinatorStub, timeout: float) -> dict[str, object]:
        chunks = list(stub.SnapshotSave(coordinator_pb2.SnapshotSaveRequest(), timeout=timeout))
        meta: dict[str, object] = json.loads(chunks[0].meta_json)
        tables = json.loads(b"".join(c.data for c in chunks[1:]) or b"{}")
        path.write_text(json.dumps({"meta": meta, "tables": tables}, indent=2) + "\n")
        return meta

    meta = coordinators.call(save)
    click.echo(f"{meta['keys']} keys at term {meta['term']} written to {path}")


@ctl.command("inspect-needs")
@click.option(
    "--shard-addr",
    required=True,
    envvar="BIGFLEET_SHARD",
    metavar="HOST:PORT",
    help="The shard to read (its gRPC port); env BIGFLEET_SHARD.",
)
@click.option("--cluster", default="", help="Only this cluster's needs.")
@click.option(
    "--limit", default=0, show_default=True, type=click.IntRange(0), help="At most N rows; 0: all."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or JSON with the header and every row.",
)
@click.pass_obj
def inspect_needs(
    coordinators: Coordinators, shard_addr: str, cluster: str, limit: int, output: str
) -> None:
    """A shard's last verdict per need (ShardRead.InspectNeeds), every page of it.

    Rows come priority first, then arrival, then cluster. Under mutual TLS the
    shard takes a readonly or admin certificate. `bigfleet explain` says the
    same in sentences.
    """
    from bigfleet import explain as words
    from bigfleet.cli.explain import ShardReader

    reader = ShardReader(shard_addr, coordinators.credentials, coordinators.timeout_s)
    verdicts = reader.read(cluster=cluster, limit=limit)
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "shard": shard_addr,
                    **words.header_dict(verdicts.header),
                    "needs": [words.as_dict(v) for v in verdicts.views],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    click.echo(f"shard {shard_addr}: {words.header_sentence(verdicts.header)}")
    if not verdicts.computed:
        return
    _table(
        [
            "CLUSTER",
            "PRIORITY",
            "FINGERPRINT",
            "SATISFIED",
            "REASON",
            "DEFICIT",
            "CLAIMED",
            "AGE_UNMET",
        ],
        [
            [
                v.cluster_id,
                v.need.priority,
                v.profile_fingerprint[:12] or "—",
                "yes" if v.satisfied else "no",
                words.reason(v),
                words.resources_words(v.residual_deficit.resources) or "—",
                v.claimed_machine_count,
                v.age_cycles_unmet,
            ]
            for v in verdicts.views
        ],
    )
    if verdicts.cut_short and not limit and verdicts.header is not None:
        total = verdicts.header.total_needs
        click.echo(
            f"showing {len(verdicts.views)} of {total} needs: "
            "the shard capped the rows and offered no next page",
            err=True,
        )
