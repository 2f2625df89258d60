"""Requirements from the shard's frames, read with the kernel's operator vocabulary."""

from __future__ import annotations

from bigfleet.requirements import Operator
from bigfleet.wire import capacity_pb2


def operator_of(requirement: capacity_pb2.NodeSelectorRequirement) -> Operator:
    """The requirement's operator; an unspecified or unknown number reads as In."""
    try:
        return Operator.from_wire(requirement.operator)
    except ValueError:
        return Operator.IN
