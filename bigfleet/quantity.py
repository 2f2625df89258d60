"""Kubernetes quantities ("2", "500m", "8Gi", "1E", "1e3") as integer milli-units.

Parsed once at the edge (roll-up ingest, provider records, the operator's
CapacityRequests) so every engine computation is integer arithmetic, by this
one parser. The grammar is Kubernetes' (k8s.io/apimachinery resource.Quantity):

    <quantity>        ::= <sign>? <number> <suffix>
    <number>          ::= <digits> | <digits> "." | <digits> "." <digits> | "." <digits>
    <suffix>          ::= <binarySI> | <decimalSI> | <decimalExponent>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei                 (2^10 .. 2^60)
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E      (10^-9 .. 10^18)
    <decimalExponent> ::= ("e" | "E") <sign>? <digits>               (10^<digits>)

So `E` alone is exa (`1E` is 10^18) and `E` followed by digits is an exponent
(`2E3` is 2000), exactly as Kubernetes reads them. No whitespace, no other
suffix, and the exponent is an integer (Kubernetes' parser refuses `1e1.5` too);
the degenerate texts Kubernetes' parser happens to read as zero (`-`, `Ki`) are
refused, since the grammar wants a digit.

The engine's range is Kubernetes' own int64 limit on milli-values: a quantity
whose magnitude exceeds `MAX_MILLI` (2^63-1) milli-units, about 9.2P units
(`1Ei`, `2E`, `8Ei`, `1e999999`), is refused, never overflowed or rounded. The
size is checked from the digit count and exponent before any arithmetic, so an
absurd exponent costs nothing. Conversion to milli-units rounds up (toward
+infinity), as Kubernetes does, so a fractional request is never under-counted.
`InvalidQuantity` is a ValueError whose message names the text.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Context, Decimal
from functools import lru_cache
from typing import NamedTuple

MAX_MILLI = 2**63 - 1  # Kubernetes' int64 milli-value limit: the engine's largest quantity

# Possessive (`*+`): digits never backtrack, so a long text fails in one linear scan.
_FORM = re.compile(
    r"(?P<sign>[+-]?)(?P<int>[0-9]*+)(?:\.(?P<frac>[0-9]*+))?"
    r"(?:(?P<si>[KMGTPE]i|[numkMGTPE])|[eE](?P<exp>[+-]?[0-9]++))?"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}  # powers of two
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_MAX_EXPONENT = 2**31 - 1  # Kubernetes keeps a decimal exponent in an int32
_LIMIT_DIGITS = len(str(MAX_MILLI))  # 19: any value of 10^19 milli-units or more is too big
_SHOWN = 64  # characters of a refused text quoted in the message
_INT_DIGITS = 40  # significant digits up to this many take integer arithmetic, more Decimal
_CACHED = 32  # texts up to this length are remembered (a bounded cache)


class InvalidQuantity(ValueError):
    """Text that is not a Kubernetes quantity, or one outside the engine's range."""


def _quote(text: str) -> str:
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


class _Parts(NamedTuple):
    """value = sign * significant * 10^scale * 2^power milli-units, |value| <= MAX_MILLI."""

    negative: bool
    significant: str  # digits without leading or trailing zeros; "" for zero
    scale: int
    power: int


_ZERO = _Parts(False, "", 0, 0)


def _parts(text: str | int) -> _Parts:
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise InvalidQuantity(f"{text!r} is not a Kubernetes quantity")
    if isinstance(text, int):
        if abs(text) * 1000 > MAX_MILLI:
            raise InvalidQuantity(f"{text} is out of range (at most {MAX_MILLI}m)")
        return _parts(str(text))
    match = _FORM.fullmatch(text)
    if match is None or not (match["int"] or match["frac"]):
        raise InvalidQuantity(f"{_quote(text)} is not a Kubernetes quantity")
    whole, frac = match["int"], match["frac"] or ""
    digits = (whole + frac).lstrip("0")
    if not digits:
        return _ZERO  # zero with any suffix or exponent
    significant = digits.rstrip("0")
    scale, power = 3 - len(frac) + (len(digits) - len(significant)), 0
    if match["exp"] is not None:
        exp_text = match["exp"].lstrip("+-").lstrip("0") or "0"
        if len(exp_text) > len(str(_MAX_EXPONENT)) or int(exp_text) > _MAX_EXPONENT:
            raise InvalidQuantity(f"{_quote(text)} has an exponent out of range")
        scale += -int(exp_text) if match["exp"].startswith("-") else int(exp_text)
    elif match["si"] in _BINARY:
        power = _BINARY[match["si"]]
    elif match["si"]:
        scale += _DECIMAL[match["si"]]
    # Size first, from the digit count alone (2^power < 10^(power*3//10 + 1)), so
    # no arithmetic ever builds a number much larger than the range.
    if len(significant) - 1 + scale + power * 3 // 10 >= _LIMIT_DIGITS:
        raise InvalidQuantity(f"{_quote(text)} is out of range (at most {MAX_MILLI}m)")
    parts = _Parts(match["sign"] == "-", significant, scale, power)
    if len(significant) + scale + _LIMIT_DIGITS <= 0:
        return parts  # below one milli-unit even at 2^60: in range
    if len(significant) > _INT_DIGITS:
        too_big = abs(_exact(parts)) > MAX_MILLI
    elif scale >= 0:
        too_big = (int(significant) << power) * 10**scale > MAX_MILLI
    else:
        too_big = int(significant) << power > MAX_MILLI * 10**-scale
    if too_big:
        raise InvalidQuantity(f"{_quote(text)} is out of range (at most {MAX_MILLI}m)")
    return parts


def _exact(parts: _Parts) -> Decimal:
    """The exact milli-value (no rounding: the context holds every digit)."""
    context = Context(prec=len(parts.significant) + 40, Emin=-(2**40), Emax=2**40)
    value = context.multiply(Decimal(f"{parts.significant}E{parts.scale}"), Decimal(2**parts.power))
    return -value if parts.negative else value


def _ceil(parts: _Parts) -> int:
    """The milli-value rounded toward +infinity."""
    if not parts.significant:
        return 0
    if len(parts.significant) + parts.scale + _LIMIT_DIGITS <= 0:
        return 0 if parts.negative else 1  # |value| < 1 milli-unit
    if len(parts.significant) > _INT_DIGITS:
        return int(_exact(parts).to_integral_value(rounding=ROUND_CEILING))
    n = int(parts.significant) << parts.power
    if parts.scale >= 0:
        factor: int = 10**parts.scale
        return -n * factor if parts.negative else n * factor
    d: int = 10**-parts.scale  # -scale < _INT_DIGITS + 19 here
    return -(n // d) if parts.negative else -(-n // d)


@lru_cache(maxsize=4096)
def _milli_of_short_text(text: str) -> int:
    return _ceil(_parts(text))


def parse(text: str | int) -> Decimal:
    """The exact value of a quantity; InvalidQuantity for text outside the grammar or range."""
    parts = _parts(text)
    if not parts.significant:
        return Decimal(0)
    milli = _exact(parts)
    context = Context(prec=len(milli.as_tuple().digits) + 5, Emin=-(2**40), Emax=2**40)
    return context.scaleb(milli, -3)


def to_milli(text: str | int) -> int:
    """A quantity in milli-units, rounded up; InvalidQuantity outside the grammar or range."""
    if isinstance(text, str) and len(text) <= _CACHED:
        return _milli_of_short_text(text)  # few distinct texts: machines come in few shapes
    return _ceil(_parts(text))


def from_milli(milli: int) -> str:
    """Shortest canonical text for a milli-unit amount ("1500m", "4", "0")."""
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"
