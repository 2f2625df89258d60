"""Typed models of the four CRDs' spec and status, for decoding objects at the edge.

They mirror crds/*.yaml (a unit test keeps every schema property and model
field in step) and are frozen: a change is a new value. Decoding tolerates
fields a newer CRD version may add; encoding writes camelCase, omitting unset
fields, ready for a create or a merge patch.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bigfleet.requirements import NodeSelectorOperatorName, OperatorName

# A non-negative Kubernetes quantity ("2", "500m", "8Gi", "1e3"), as the CRDs accept it.
QUANTITY_PATTERN = re.compile(
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity_text(value: object) -> object:
    # int-or-string on the wire: the API server keeps what the client sent.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _check_quantity(value: str) -> str:
    if not QUANTITY_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity")
    return value


Quantity = Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_check_quantity)]
ResourceList = dict[str, Quantity]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


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
    key: str = Field(min_length=1)
    operator: NodeSelectorOperatorName
    values: tuple[str, ...] | None = None


class TopologySpread(Model):
    topology_key: str = Field(min_length=1)
    max_skew: Int32 = Field(ge=1)
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]


class LabelSelectorRequirement(Model):
    key: str
    operator: NodeSelectorOperatorName  # a label selector takes the same four
    values: tuple[str, ...] | None = None


class LabelSelector(Model):
    match_labels: dict[str, str] | None = None
    match_expressions: tuple[LabelSelectorRequirement, ...] | None = None


class CoLocation(Model):
    topology_key: str = Field(min_length=1)
    label_selector: LabelSelector | None = None


class CapacityRequestSpec(Model):
    requirements: tuple[NodeSelectorRequirement, ...] | None = None
    resources: ResourceList = Field(min_length=1)
    priority: Int32
    topology_spread: tuple[TopologySpread, ...] | None = None
    co_location: CoLocation | None = None
    interruption_penalty: Quantity | None = None
    reclamation_penalty: Quantity | None = None


class RequestCondition(Model):
    type: Literal["Translatable"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: datetime


class CapacityRequestStatus(Model):
    # Empty counts as Pending: the operator writes the phase exactly once.
    phase: Literal["Pending", "Acknowledged"] | None = None
    acknowledged_at: datetime | None = None
    conditions: tuple[RequestCondition, ...] | None = None


class Taint(Model):
    key: str = Field(min_length=1)
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class UpcomingNodeSpec(Model):
    labels: dict[str, str] | None = None
    resources: ResourceList
    taints: tuple[Taint, ...] | None = None


class ObjectReference(Model):
    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    uid: str | None = None


UpcomingNodePhase = Literal[
    "Provisioning", "Launched", "Registered", "Ready", "Draining", "Drained", "Failed"
]


class UpcomingNodeStatus(Model):
    phase: UpcomingNodePhase
    node_ref: ObjectReference | None = None
    provider_id: str | None = Field(default=None, alias="providerID")
    provisioning_start_time: datetime | None = None
    last_error: str | None = None


class AvailableCapacityRequirement(Model):
    key: str = Field(min_length=1)
    # Same arrives from co-location on the wire and is shown as it came.
    operator: OperatorName
    values: tuple[str, ...] | None = None


class AvailableCapacitySpec(Model):
    requirements: tuple[AvailableCapacityRequirement, ...] | None = None
    resources: ResourceList
    available_count: int = Field(ge=0, le=2**31 - 1)
    availability: Literal["None", "Low", "Medium", "High"]
    cost: Quantity


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


class ShardShortfall(Model):
    cluster: str
    requirements: str | None = None
    priority: Int32
    deficit: dict[str, str] | None = None
    age_cycles: NonNegative | None = None


class Condition(Model):
    type: Literal["Ready", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    observed_generation: NonNegative | None = None
    last_transition_time: datetime
    reason: str
    message: str


class ShardCoordinatorView(Model):
    registered: bool | None = None
    address: str | None = None
    last_heartbeat_time: datetime | None = None
    domains: tuple[str, ...] | None = None
    rebalancing: str | None = None
    leader: str | None = None
    term: NonNegative | None = None
    mirrored_time: datetime | None = None


class ShardStatus(Model):
    observed_generation: NonNegative | None = None
    epoch: NonNegative | None = None
    cycle: NonNegative | None = None
    last_cycle_time: datetime | None = None
    cycle_p50_seconds: float | None = Field(default=None, ge=0)
    cycle_p99_seconds: float | None = Field(default=None, ge=0)
    inventory: ShardInventory | None = None
    demand: ShardDemand | None = None
    shortfall_count: NonNegative | None = None
    shortfalls: tuple[ShardShortfall, ...] | None = None
    connected_clusters: tuple[str, ...] | None = None
    connected_cluster_count: NonNegative | None = None
    conditions: tuple[Condition, ...] | None = None
    coordinator: ShardCoordinatorView | None = None
