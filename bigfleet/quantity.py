"""Kubernetes quantities ("2", "500m", "8Gi", "1e3") as integer milli-units.

Parsed once at the edge (roll-up ingest, provider records) so every engine
computation is integer arithmetic. Conversion rounds up, as Kubernetes does
for milli-values, so a fractional request is never under-counted.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_FORM = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


class InvalidQuantity(ValueError):
    """Text that is not a Kubernetes quantity."""


def parse(text: str | int) -> Decimal:
    """The exact value of a quantity."""
    if isinstance(text, int):
        return Decimal(text)
    match = _FORM.match(text.strip())
    if match is None:
        raise InvalidQuantity(f"{text!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as err:  # pragma: no cover - the pattern admits only numbers
        raise InvalidQuantity(f"{text!r} is not a Kubernetes quantity") from err
    if suffix[:1] in ("e", "E"):
        return value * (Decimal(10) ** int(suffix[1:]))
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix in _DECIMAL:
        return value * _DECIMAL[suffix]
    raise InvalidQuantity(f"{text!r} has an unknown suffix {suffix!r}")


def to_milli(text: str | int) -> int:
    """A quantity in milli-units, rounded up."""
    return math.ceil(parse(text) * 1000)


def from_milli(milli: int) -> str:
    """Shortest canonical text for a milli-unit amount ("1500m", "4", "0")."""
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"
