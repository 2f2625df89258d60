"""Requirement operators: one vocabulary for the CRDs, the wire and the engine.

The CRD spells them as Kubernetes node selectors do (`In`, `NotIn`, ...), the
wire numbers them (`NodeSelectorRequirement.Operator`), and the engine matches
on the enum below. `Same` is BigFleet's own: every machine of a need shares one
value of the key (co-location); it never appears in a Kubernetes node selector.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    SAME = "Same"

    @property
    def wire(self) -> int:
        """The wire enum number of this operator."""
        return _TO_WIRE[self]

    @classmethod
    def from_wire(cls, number: int) -> Operator:
        """The operator of a wire enum number; ValueError for UNSPECIFIED or unknown numbers."""
        try:
            return _FROM_WIRE[number]
        except KeyError:
            raise ValueError(f"unknown requirement operator {number}") from None


# NodeSelectorRequirement.Operator numbers, written out so the pure engine can use this module
# without loading the wire stack; a unit test compares them with the compiled enum.
_TO_WIRE: dict[Operator, int] = {
    Operator.IN: 1,
    Operator.NOT_IN: 2,
    Operator.EXISTS: 3,
    Operator.DOES_NOT_EXIST: 4,
    Operator.SAME: 5,
}
_FROM_WIRE: dict[int, Operator] = {int(number): op for op, number in _TO_WIRE.items()}

# What a Kubernetes node selector (node affinity, a CapacityRequest's requirement) accepts.
NODE_SELECTOR_OPERATORS = frozenset(
    {Operator.IN, Operator.NOT_IN, Operator.EXISTS, Operator.DOES_NOT_EXIST}
)

# The same sets as types for typed models (pydantic reads these; a unit test keeps them equal).
NodeSelectorOperatorName = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OperatorName = Literal["In", "NotIn", "Exists", "DoesNotExist", "Same"]
