"""Typed models of the four CRDs' spec and status, for decoding objects at the edge.

They mirror crds/*.yaml (a unit test keeps every schema property and model
field in step, another every limit: name rules, lengths, counts and quantity
bounds) and are frozen: a change is a new value. Decoding tolerates fields a
newer CRD version may add; encoding writes camelCase, omitting unset fields,
ready for a create or a merge patch.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from bigfleet import k8snames, quantity
from bigfleet.requirements import NodeSelectorOperatorName, OperatorName

# The limits the CRD schemas enforce (docs/crds.md lists them; a unit test compares).
MAX_REQUIREMENTS = 64  # requirements of a request or of a shape
MAX_VALUES = 64  # values of one requirement or label selector expression
MAX_RESOURCES = 64  # entries of a resource map
MAX_LABELS = 64  # labels of a Node, match labels of a co-location selector
MAX_TAINTS = 64
MAX_SPREAD = 16  # topology spread constraints; co-location match expressions
QUANTITY_MAX_LENGTH = 64
LABEL_KEY_MAX_LENGTH = k8snames.DNS1123_SUBDOMAIN_MAX + 1 + k8snames.QUALIFIED_NAME_MAX  # 317
MAX_RESOURCE_QUANTITY = Decimal(2**50)  # 1Pi: a thousand times it still fits int64 milli-units
MAX_DOLLARS = Decimal(2**23)  # prices; also the largest finite penalty bucket (bigfleet.penalty)
# Penalties may go beyond the last finite bucket: anything above it pins the request.
MAX_PENALTY = Decimal(10**9)


# The quantity texts the CRDs accept: Kubernetes' grammar with a sign and at most a three-digit
# exponent (a longer one makes the API server's parser spin), and no degenerate "Ki" or "-".
QUANTITY_PATTERN = re.compile(
    r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3}|[KMGTPE]i|[numkMGTPE])?$"
)


def _quantity_text(value: object) -> object:
    # int-or-string on the wire: the API server keeps what the client sent.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _bounded(limit: Decimal, shown: str) -> AfterValidator:
    """A check that the text is a Kubernetes quantity between 0 and `limit`."""

    def check(value: str) -> str:
        if QUANTITY_PATTERN.match(value) is None:
            raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity")
        try:
            amount = quantity.parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity") from None
        if amount < 0:
            raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity")
        if amount > limit:
            raise ValueError(f"{value!r} is more than {shown}")
        return value

    return AfterValidator(check)


def _label_key(value: str) -> str:
    problem = k8snames.label_key_error(value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a label key: {problem}")
    return value


def _resource_name(value: str) -> str:
    problem = k8snames.label_key_error(value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a resource name: {problem}")
    return value


def _label_value(value: str) -> str:
    problem = k8snames.label_value_error(value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a label value: {problem}")
    return value


# A non-negative Kubernetes quantity ("2", "500m", "8Gi", "1e3") of at most 1Pi.
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    Field(max_length=QUANTITY_MAX_LENGTH),
    _bounded(MAX_RESOURCE_QUANTITY, "1Pi"),
]
# US dollars as a quantity ("2", "500m"), at most 2^23 (8388608).
Dollars = Annotated[
    str,
    BeforeValidator(_quantity_text),
    Field(max_length=QUANTITY_MAX_LENGTH),
    _bounded(MAX_DOLLARS, "8388608 dollars"),
]
# A penalty in US dollars, at most 1G; above 8388608 it pins the request (bucket PINNED).
Penalty = Annotated[
    str,
    BeforeValidator(_quantity_text),
    Field(max_length=QUANTITY_MAX_LENGTH),
    _bounded(MAX_PENALTY, "1G dollars (anything above 8388608 already pins the request)"),
]
# A label key, taint key or topology key: a Kubernetes qualified name.
LabelKey = Annotated[str, Field(max_length=LABEL_KEY_MAX_LENGTH), AfterValidator(_label_key)]
# A resource name (cpu, memory, hugepages-2Mi, nvidia.com/gpu): a qualified name too.
ResourceName = Annotated[
    str, Field(max_length=LABEL_KEY_MAX_LENGTH), AfterValidator(_resource_name)
]
LabelValue = Annotated[
    str, Field(max_length=k8snames.LABEL_VALUE_MAX), AfterValidator(_label_value)
]
ResourceList = Annotated[dict[ResourceName, Quantity], Field(max_length=MAX_RESOURCES)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
LabelValues = Annotated[tuple[LabelValue, ...], Field(max_length=MAX_VALUES)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Text = Annotated[str, Field(max_length=32768)]  # messages and errors


def _values_fit_operator(operator: str, values: tuple[str, ...] | None) -> None:
    if operator in ("In", "NotIn") and not values:
        raise ValueError(f"values must be non-empty for {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ValueError(f"values must be empty for {operator}")


class Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
    )

    @classmethod
    def from_object(cls, data: dict[str, Any] | None) -> Self:
        """Decode a spec or status dict as read from the API server."""
        return cls.model_validate(data or {})

    def to_object(self) -> dict[str, Any]:
        """Encode as the API server expects it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class NodeSelectorRequirement(Model):
    key: LabelKey = Field(min_length=1)
    operator: NodeSelectorOperatorName
    values: LabelValues | None = None

    @model_validator(mode="after")
    def _values_fit(self) -> Self:
        _values_fit_operator(self.operator, self.values)
        return self


class TopologySpread(Model):
    topology_key: LabelKey = Field(min_length=1)
    max_skew: Int32 = Field(ge=1)
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]


class LabelSelectorRequirement(Model):
    key: LabelKey = Field(min_length=1)
    operator: NodeSelectorOperatorName  # a label selector takes the same four
    values: LabelValues | None = None

    @model_validator(mode="after")
    def _values_fit(self) -> Self:
        _values_fit_operator(self.operator, self.values)
        return self


class LabelSelector(Model):
    match_labels: Labels | None = None
    match_expressions: (
        Annotated[tuple[LabelSelectorRequirement, ...], Field(max_length=MAX_SPREAD)] | None
    ) = None


class CoLocation(Model):
    topology_key: LabelKey = Field(min_length=1)
    label_selector: LabelSelector | None = None


class CapacityRequestSpec(Model):
    requirements: (
        Annotated[tuple[NodeSelectorRequirement, ...], Field(max_length=MAX_REQUIREMENTS)] | None
    ) = None
    resources: ResourceList = Field(min_length=1)
    priority: Int32
    topology_spread: Annotated[tuple[TopologySpread, ...], Field(max_length=MAX_SPREAD)] | None = (
        None
    )
    co_location: CoLocation | None = None
    interruption_penalty: Penalty | None = None
    reclamation_penalty: Penalty | None = None


class RequestCondition(Model):
    type: Literal["Translatable", "Satisfied"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=1024)
    message: Text
    last_transition_time: datetime


class CapacityRequestStatus(Model):
    # Empty counts as Pending: the operator writes the phase exactly once.
    phase: Literal["Pending", "Acknowledged"] | None = None
    acknowledged_at: datetime | None = None
    conditions: Annotated[tuple[RequestCondition, ...], Field(max_length=8)] | None = None


class Taint(Model):
    key: LabelKey = Field(min_length=1)
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class UpcomingNodeSpec(Model):
    labels: Labels | None = None
    resources: ResourceList
    taints: Annotated[tuple[Taint, ...], Field(max_length=MAX_TAINTS)] | None = None


class ObjectReference(Model):
    api_version: str | None = Field(default=None, max_length=LABEL_KEY_MAX_LENGTH)
    kind: str | None = Field(default=None, max_length=63)
    name: str | None = Field(default=None, max_length=253)
    uid: str | None = Field(default=None, max_length=128)


UpcomingNodePhase = Literal[
    "Provisioning", "Launched", "Registered", "Ready", "Draining", "Drained", "Failed"
]


class UpcomingNodeStatus(Model):
    phase: UpcomingNodePhase
    node_ref: ObjectReference | None = None
    provider_id: str | None = Field(default=None, alias="providerID", max_length=2048)
    provisioning_start_time: datetime | None = None
    last_error: Text | None = None


class AvailableCapacityRequirement(Model):
    key: LabelKey = Field(min_length=1)
    # Same arrives from co-location on the wire and is shown as it came.
    operator: OperatorName
    values: LabelValues | None = None


class AvailableCapacitySpec(Model):
    requirements: (
        Annotated[tuple[AvailableCapacityRequirement, ...], Field(max_length=MAX_REQUIREMENTS)]
        | None
    ) = None
    resources: ResourceList
    available_count: int = Field(ge=0, le=2**31 - 1)
    availability: Literal["None", "Low", "Medium", "High"]
    cost: Dollars


class ShardSpec(Model):
    pause_acquisitions: bool = False
    pause_reclaims: bool = False
    dry_run: bool = False
    cycle_interval_seconds: int = Field(default=10, ge=1, le=3600)


NonNegative = Annotated[int, Field(ge=0)]


class ShardInventory(Model):
    total: NonNegative = 0
    speculative: NonNegative = 0
    creating: NonNegative = 0
    idle: NonNegative = 0
    configuring: NonNegative = 0
    configured: NonNegative = 0
    draining: NonNegative = 0
    deleting: NonNegative = 0
    failed: NonNegative = 0


class ShardDemand(Model):
    needs: NonNegative = 0
    clusters: NonNegative = 0


MAX_CLUSTERS = 4096  # connected clusters (and owned domains) a Shard's status lists


class ShardShortfall(Model):
    cluster: str = Field(max_length=253)
    requirements: str | None = Field(default=None, max_length=65536)
    priority: Int32
    deficit: (
        Annotated[
            dict[str, Annotated[str, Field(max_length=QUANTITY_MAX_LENGTH)]],
            Field(max_length=MAX_RESOURCES),
        ]
        | None
    ) = None
    age_cycles: NonNegative | None = None


class Condition(Model):
    type: Literal["Ready", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    observed_generation: NonNegative | None = None
    last_transition_time: datetime
    reason: str = Field(max_length=1024)
    message: Text


class ShardCoordinatorView(Model):
    registered: bool | None = None
    address: str | None = Field(default=None, max_length=1024)
    last_heartbeat_time: datetime | None = None
    domains: (
        Annotated[tuple[Annotated[str, Field(max_length=512)], ...], Field(max_length=MAX_CLUSTERS)]
        | None
    ) = None
    rebalancing: str | None = Field(default=None, max_length=1024)
    leader: str | None = Field(default=None, max_length=253)
    term: NonNegative | None = None
    mirrored_time: datetime | None = None


class ShardStatus(Model):
    observed_generation: NonNegative | None = None
    epoch: NonNegative | None = None
    cycle: NonNegative | None = None
    last_cycle_time: datetime | None = None
    cycle_p50_seconds: float | None = Field(default=None, ge=0)
    cycle_p99_seconds: float | None = Field(default=None, ge=0)
    cycle_p99_milliseconds: float | None = Field(default=None, ge=0)
    inventory: ShardInventory | None = None
    demand: ShardDemand | None = None
    shortfall_count: NonNegative | None = None
    shortfalls: Annotated[tuple[ShardShortfall, ...], Field(max_length=20)] | None = None
    connected_clusters: (
        Annotated[tuple[Annotated[str, Field(max_length=253)], ...], Field(max_length=MAX_CLUSTERS)]
        | None
    ) = None
    connected_cluster_count: NonNegative | None = None
    conditions: Annotated[tuple[Condition, ...], Field(max_length=8)] | None = None
    coordinator: ShardCoordinatorView | None = None
