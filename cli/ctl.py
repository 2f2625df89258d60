"""`bigfleet ctl`: administer the coordinator over its gRPC service; read a shard's verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import grpc

from bigfleet.cli import options
from bigfleet.cli.output import output_option, print_data, print_records, print_table
from bigfleet.timestamps import from_unix_ns
from bigfleet.wire import GRPC_OPTIONS, coordinator_pb2, coordinator_pb2_grpc

if TYPE_CHECKING:
    from bigfleet.cli.explain import Verdicts
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


def _when(unix_ns: int) -> str | None:
    """A wire time as RFC 3339 UTC; None (null, `—` in a table) when unset."""
    return from_unix_ns(unix_ns) if unix_ns else None


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
@output_option
@click.pass_obj
def list_shards(coordinators: Coordinators, output: str) -> None:
    """Registered shards and their last heartbeat (UTC)."""
    reply = coordinators.call(
        lambda stub, t: stub.ListShards(coordinator_pb2.ListShardsRequest(), timeout=t)
    )
    print_records(
        output,
        {
            "SHARD": "shard_id",
            "ADDRESS": "address",
            "REGISTERED": "registered_at",
            "LAST_HEARTBEAT": "last_heartbeat_at",
        },
        [
            {
                "shard_id": s.shard_id,
                "address": s.address,
                "registered_at": _when(s.registered_at_unix_ns),
                "last_heartbeat_at": _when(s.last_heartbeat_unix_ns),
            }
            for s in reply.shards
        ],
    )


@ctl.command("list-domain-assignments")
@output_option
@click.pass_obj
def list_domain_assignments(coordinators: Coordinators, output: str) -> None:
    """Which shard owns each topology domain."""
    reply = coordinators.call(
        lambda stub, t: stub.ListDomainAssignments(
            coordinator_pb2.ListDomainAssignmentsRequest(), timeout=t
        )
    )
    print_records(
        output,
        {"TOPOLOGY_KEY": "topology_key", "TOPOLOGY_VALUE": "topology_value", "SHARD": "shard_id"},
        [
            {
                "topology_key": a.topology_key,
                "topology_value": a.topology_value,
                "shard_id": a.shard_id,
            }
            for a in reply.assignments
        ],
    )


@ctl.command("list-shard-reports")
@click.option("--shard", default="", help="Only this shard.")
@output_option
@click.pass_obj
def list_shard_reports(coordinators: Coordinators, shard: str, output: str) -> None:
    """The leader's latest report per shard (empty right after a failover)."""
    request = coordinator_pb2.ListShardReportsRequest(shard_id=shard)
    reply = coordinators.call(lambda stub, t: stub.ListShardReports(request, timeout=t))
    print_records(
        output,
        {
            "SHARD": "shard_id",
            "CYCLE": "cycle",
            "RECEIVED": "received_at",
            "MACHINES": "total_machines",
            "FREE": "free_machines",
            "SHORTFALLS": "shortfall_count",
        },
        [
            {
                "shard_id": r.shard_id,
                "cycle": r.cycle,
                "received_at": _when(r.received_at_unix_ns),
                "total_machines": r.summary.total_machines,
                "free_machines": r.summary.free_machines,
                "shortfall_count": len(r.shortfalls),
            }
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
@output_option
@click.pass_obj
def list_quotas(coordinators: Coordinators, output: str) -> None:
    """Quota slots moved between shards by rebalancing, per provider and region."""
    reply = coordinators.call(
        lambda stub, t: stub.ListQuotas(coordinator_pb2.ListQuotasRequest(), timeout=t)
    )
    print_records(
        output,
        {"PROVIDER": "provider", "REGION": "region", "SHARD": "shard_id", "SLOTS": "slots"},
        [
            {"provider": a.provider, "region": a.region, "shard_id": shard, "slots": slots}
            for a in reply.allocations
            for shard, slots in sorted(a.per_shard.items())
        ],
    )


@ctl.command("list-providers")
@output_option
@click.pass_obj
def list_providers(coordinators: Coordinators, output: str) -> None:
    """Capacity providers the shards report."""
    reply = coordinators.call(
        lambda stub, t: stub.ListProviders(coordinator_pb2.ListProvidersRequest(), timeout=t)
    )
    print_records(
        output,
        {"NAME": "name", "ADDRESS": "address", "REGION": "region"},
        [{"name": p.name, "address": p.address, "region": p.region} for p in reply.providers],
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
@output_option
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
    data = {
        "shard": shard_addr,
        **words.header_dict(verdicts.header),
        "needs": [words.as_dict(v) for v in verdicts.views],
    }
    print_data(output, data, lambda: _needs_table(shard_addr, verdicts, limit))


def _needs_table(shard_addr: str, verdicts: Verdicts, limit: int) -> None:
    """The header in words, a row per need, and a note on stderr when rows were cut short."""
    from bigfleet import explain as words

    click.echo(f"shard {shard_addr}: {words.header_sentence(verdicts.header)}")
    if not verdicts.computed:
        return
    print_table(
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
