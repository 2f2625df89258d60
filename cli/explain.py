"""`bigfleet explain`: why a CapacityRequest is (or is not) satisfied, in words.

Reads the shard's last verdicts over `ShardRead.InspectNeeds` (paging through
the BigFleet `next_page_token` extension) and puts them into sentences
(`bigfleet.explain`). `explain capacityrequest` also reads the request from the
cluster's API server and translates it the way the operator does, so it finds
the one need the request was folded into. `bigfleet ctl inspect-needs` uses the
same reader.

Exit codes: 0 explained; 1 an error (request not found or untranslatable, the
API server or the shard refused or is unreachable); 2 a usage error; 3 no
verdict yet (the shard has not run a cycle, or has no need for the request).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import grpc

from bigfleet import explain as words
from bigfleet.cli import options
from bigfleet.cli.output import print_json, print_table
from bigfleet.wire import GRPC_OPTIONS, capacity_pb2, shardread_pb2, shardread_pb2_grpc

if TYPE_CHECKING:
    from bigfleet.tls import Credentials, TLSFiles

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_NO_VERDICT = 3
RESTARTS = 3  # times paging starts over when the shard's cycle moves on between pages


class NoVerdict(click.ClickException):
    """The shard has nothing to say yet; exits EXIT_NO_VERDICT."""

    exit_code = EXIT_NO_VERDICT

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class Untranslatable(ValueError):
    """A CapacityRequest the operator's translation refuses; the message says why."""


# ---------------------------------------------------------------------------------------------
# Reading the shard.


@dataclass
class Verdicts:
    """What one read of InspectNeeds returned: the first page's header and every row."""

    header: shardread_pb2.InspectNeedsHeader | None
    views: list[shardread_pb2.NeedView] = field(default_factory=list)
    pages: int = 0

    @property
    def computed(self) -> bool:
        return words.computed(self.header)

    @property
    def cut_short(self) -> bool:
        """The shard holds more rows than came back, without a token to fetch them."""
        return self.header is not None and self.header.total_needs > len(self.views)


def rpc_error(err: grpc.RpcError, address: str, cluster: str = "") -> click.ClickException:
    """One line naming the status code and what to do about it."""
    code: grpc.StatusCode = err.code()
    details = err.details() or ""
    if code == grpc.StatusCode.PERMISSION_DENIED:
        own = f", or bigfleet://cluster/{cluster} for that cluster's own needs" if cluster else ""
        return click.ClickException(
            f"PERMISSION_DENIED: the shard at {address} refused this certificate ({details}); "
            f"InspectNeeds needs a bigfleet://readonly or bigfleet://admin certificate{own}: "
            "pass it with --tls-cert/--tls-key/--tls-ca"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return click.ClickException(f"UNAVAILABLE: shard not reachable at {address} ({details})")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return click.ClickException(
            f"DEADLINE_EXCEEDED: the shard at {address} did not answer in time (--timeout)"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return click.ClickException(
            f"UNIMPLEMENTED: the process at {address} does not serve ShardRead.InspectNeeds "
            "(is it a shard, and a recent one?)"
        )
    return click.ClickException(f"{code.name}: {details} (shard {address})")


class ShardReader:
    """InspectNeeds from one shard, every page of it."""

    def __init__(
        self, address: str, credentials: Credentials | None = None, timeout_s: float = 10.0
    ) -> None:
        self.address = address
        self.credentials = credentials
        self.timeout_s = timeout_s

    def _page(
        self, stub: shardread_pb2_grpc.ShardReadStub, request: shardread_pb2.InspectNeedsRequest
    ) -> tuple[shardread_pb2.InspectNeedsHeader | None, list[shardread_pb2.NeedView]]:
        header: shardread_pb2.InspectNeedsHeader | None = None
        rows: list[shardread_pb2.NeedView] = []
        for frame in stub.InspectNeeds(request, timeout=self.timeout_s):
            kind = frame.WhichOneof("frame")
            if kind == "header" and header is None:
                header = frame.header
            elif kind == "need":
                rows.append(frame.need)
        return header, rows

    def _pages(
        self, stub: shardread_pb2_grpc.ShardReadStub, cluster: str, limit: int
    ) -> Verdicts | None:
        """Every page of one cycle; None when the cycle moved on between pages (or the
        shard no longer keeps it: ABORTED)."""
        verdicts: Verdicts | None = None
        token, seen = "", set()
        while True:
            request = shardread_pb2.InspectNeedsRequest(
                cluster_id=cluster, limit=limit, page_token=token
            )
            try:
                header, rows = self._page(stub, request)
            except grpc.RpcError as err:
                if token and err.code() == grpc.StatusCode.ABORTED:
                    return None  # the walk's cycle (or the shard process) is gone: again
                raise
            if verdicts is None:
                verdicts = Verdicts(header)
            elif header is None or verdicts.header is None or header.cycle != verdicts.header.cycle:
                return None  # a later page of another cycle: its rows would not fit the first
            verdicts.pages += 1
            verdicts.views.extend(rows)
            token = header.next_page_token if header is not None else ""
            if not token or (limit and len(verdicts.views) >= limit):
                if limit:
                    del verdicts.views[limit:]
                return verdicts
            if token in seen:
                raise click.ClickException(
                    f"the shard at {self.address} sent page token {token!r} twice; stopped paging"
                )
            seen.add(token)

    def read(self, cluster: str = "", limit: int = 0) -> Verdicts:
        """The shard's verdicts for one cluster ("" for all), at most `limit` rows (0: all)."""
        from bigfleet.tls import sync_channel

        with sync_channel(self.address, self.credentials, options=GRPC_OPTIONS) as channel:
            stub = shardread_pb2_grpc.ShardReadStub(channel)
            try:
                for _ in range(RESTARTS):
                    verdicts = self._pages(stub, cluster, limit)
                    if verdicts is not None:
                        return verdicts
            except grpc.RpcError as err:
                raise rpc_error(err, self.address, cluster) from err
        raise click.ClickException(
            f"the shard at {self.address} finished a new cycle between pages {RESTARTS} times "
            "in a row; try again"
        )


# ---------------------------------------------------------------------------------------------
# Matching a CapacityRequest to its need.


def requested_need(cr: Mapping[str, Any], cluster: str) -> capacity_pb2.CapacityNeed:
    """The need the operator would send for this one request (its own resources only)."""
    from bigfleet.operators.operator.rollup import build

    rollup = build(cluster, [cr], 0)
    if rollup.problems:
        raise Untranslatable(rollup.problems[0][2])
    (need,) = rollup.message.needs
    return need


def find_view(
    cr: Mapping[str, Any], cluster: str, views: Iterable[shardread_pb2.NeedView]
) -> shardread_pb2.NeedView | None:
    """The shard's row for the need this request folds into; None when the shard has none.

    Untranslatable when the operator's translation refuses the request.
    """
    identity = words.fold_identity(requested_need(cr, cluster))
    for view in views:
        if view.cluster_id in (cluster, "") and words.fold_identity(view.need) == identity:
            return view
    return None


def _phase(cr: Mapping[str, Any]) -> str:
    status = cr.get("status") or {}
    return str(status.get("phase") or "Pending") if isinstance(status, Mapping) else "Pending"


async def _get_request(
    kubeconfig: Path | None, name: str, namespace: str | None, timeout_s: float
) -> dict[str, Any]:
    import kr8s
    import kr8s.asyncio

    from bigfleet.crd import API_VERSION, CapacityRequest

    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig) if kubeconfig else None)
    api.timeout = timeout_s
    where = namespace or api.namespace or "default"
    try:
        async with api.call_api(
            "GET", version=API_VERSION, namespace=where, url=f"{CapacityRequest.plural}/{name}"
        ) as response:
            found: dict[str, Any] = response.json()
    except kr8s.ServerError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 404:
            raise click.ClickException(
                f"CapacityRequest {where}/{name} not found (or the CRDs are not installed)"
            ) from err
        raise click.ClickException(f"the API server refused to read {where}/{name}: {err}") from err
    return found


def read_request(
    kubeconfig: Path | None, name: str, namespace: str | None, timeout_s: float = 10.0
) -> dict[str, Any]:
    """The CapacityRequest as the API server holds it; ClickException if it cannot be read."""
    import asyncio

    try:
        return asyncio.run(_get_request(kubeconfig, name, namespace, timeout_s))
    except click.ClickException:
        raise
    except Exception as err:  # kubeconfig missing or broken, API server unreachable
        raise click.ClickException(
            f"cannot read CapacityRequest {name}: {type(err).__name__}: {err}"
        ) from err


# ---------------------------------------------------------------------------------------------
# Output.


def load_credentials(tls: TLSFiles | None) -> Credentials | None:
    from bigfleet.tls import load

    try:
        return load(tls)
    except (OSError, ValueError) as err:
        raise click.UsageError(f"TLS files: {err}") from err


def shard_options(f: F) -> F:
    """--shard, --timeout, --output and the TLS flags of every `explain` command."""
    f = options.tls(f)
    f = click.option(
        "-o",
        "--output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Sentences and tables, or JSON.",
    )(f)
    f = click.option(
        "--timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0.1),
        help="Seconds per call (to the shard and to the API server).",
    )(f)
    return click.option(
        "--shard",
        "shard",
        envvar="BIGFLEET_SHARD",
        required=True,
        metavar="HOST:PORT",
        help="Where the cluster's shard serves (its gRPC port); env BIGFLEET_SHARD.",
    )(f)


@click.group()
def explain() -> None:
    """Why a CapacityRequest is or is not satisfied, from its shard's last cycle.

    Under mutual TLS pass a bigfleet://readonly or bigfleet://admin certificate
    (or the cluster's own) with --tls-cert/--tls-key/--tls-ca. Exit codes: 0
    explained, 1 error, 2 usage, 3 no verdict yet.
    """


@explain.command("capacityrequest")
@click.argument("name")
@click.option(
    "-n",
    "--namespace",
    default=None,
    help="The request's namespace (default: the kubeconfig context's namespace).",
)
@click.option(
    "--cluster-id",
    envvar="BIGFLEET_CLUSTER_ID",
    required=True,
    help="The cluster id the request's operator uses (--cluster-id of `bigfleet operator`); "
    "env BIGFLEET_CLUSTER_ID.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Credentials for the cluster's API server (default as kubectl: $KUBECONFIG, "
    "then ~/.kube/config).",
)
@shard_options
def capacityrequest(
    name: str,
    namespace: str | None,
    cluster_id: str,
    kubeconfig: Path | None,
    shard: str,
    timeout: float,
    output: str,
    tls: TLSFiles | None,
) -> None:
    """Why CapacityRequest NAME is (not) satisfied: one sentence, then the details."""
    credentials = load_credentials(tls)
    cr = read_request(kubeconfig, name, namespace, timeout)
    meta = cr.get("metadata") or {}
    who = f"{meta.get('namespace', namespace or '')}/{meta.get('name', name)}"
    try:
        own = requested_need(cr, cluster_id)
    except Untranslatable as err:
        raise click.ClickException(f"CapacityRequest {who} cannot be translated: {err}") from err
    verdicts = ShardReader(shard, credentials, timeout).read(cluster=cluster_id)
    if not verdicts.computed:
        raise NoVerdict(f"CapacityRequest {who}: {words.NOT_COMPUTED_SENTENCE}")
    view = find_view(cr, cluster_id, verdicts.views)
    if view is None:
        raise NoVerdict(f"CapacityRequest {who}: {words.no_need_sentence(_phase(cr))}")
    if output == "json":
        print_json(
            {
                "capacityrequest": {
                    "namespace": meta.get("namespace", ""),
                    "name": meta.get("name", name),
                    "phase": _phase(cr),
                    "resources": dict(sorted(cr["spec"]["resources"].items())),
                },
                "shard": {"address": shard, **words.header_dict(verdicts.header)},
                "verdict": words.as_dict(view),
            }
        )
        return
    click.echo(
        f"CapacityRequest {who} (cluster {cluster_id}; shard {shard}, "
        f"{words.header_sentence(verdicts.header)})"
    )
    click.echo(words.sentence(view))
    click.echo()
    rows = [("this request", words.resources_words(own.aggregate_resources) or "—")]
    print_table(["FIELD", "VALUE"], rows + words.table(view), show_header=False)


@explain.command("cluster")
@click.argument("cluster_id")
@shard_options
def cluster(cluster_id: str, shard: str, timeout: float, output: str, tls: TLSFiles | None) -> None:
    """Every need of cluster CLUSTER_ID on its shard: a line each and a count per reason."""
    verdicts = ShardReader(shard, load_credentials(tls), timeout).read(cluster=cluster_id)
    if not verdicts.computed:
        raise NoVerdict(f"cluster {cluster_id}: {words.NOT_COMPUTED_SENTENCE}")
    views = [v for v in verdicts.views if v.cluster_id in (cluster_id, "")]
    if output == "json":
        print_json([words.as_dict(v) for v in views])
        return
    click.echo(f"cluster {cluster_id} on shard {shard} ({words.header_sentence(verdicts.header)})")
    if not views:
        click.echo(
            f"the shard has no needs of cluster {cluster_id}: its requests are all withdrawn, "
            "or its operator dials another shard"
        )
        return
    print_table(
        ["PRIORITY", "SHAPE", "REASON", "WHY"],
        [[v.need.priority, words.shape(v.need), words.reason(v), words.brief(v)] for v in views],
    )
    counts = Counter(words.reason(v) for v in views)
    order = [words.SATISFIED, *words.REASONS.values(), words.UNSATISFIED]
    click.echo(
        f"{words.plural(len(views), 'need')}: "
        + ", ".join(f"{counts[r]} {r}" for r in order if counts[r])
    )
