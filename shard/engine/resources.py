"""Resource vectors: resource name -> integer milli-units; an absent name is 0.

Plain dicts keep the hot loops cheap. Functions never mutate their arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

Vector = Mapping[str, int]
EMPTY: Vector = {}


def add(a: Vector, b: Vector) -> dict[str, int]:
    out = dict(a)
    for name, value in b.items():
        out[name] = out.get(name, 0) + value
    return out


def sub(a: Vector, b: Vector) -> dict[str, int]:
    """Per dimension a - b, clamped at 0."""
    return {name: max(0, value - b.get(name, 0)) for name, value in a.items()}


def maximum(a: Vector, b: Vector) -> dict[str, int]:
    out = dict(a)
    for name, value in b.items():
        if value > out.get(name, 0):
            out[name] = value
    return out


def scale(a: Vector, factor: int) -> dict[str, int]:
    return {name: value * factor for name, value in a.items()}


# The two predicates below run in every inner loop of the engine; plain loops with an
# early return cost about half of all() over a generator.


def covers(have: Vector, want: Vector) -> bool:
    """Every dimension of `want` is met by `have`."""
    for name, value in want.items():  # noqa: SIM110 - see above
        if have.get(name, 0) < value:
            return False
    return True


def is_zero(a: Vector) -> bool:
    for value in a.values():  # noqa: SIM110 - see above
        if value > 0:
            return False
    return True


def add_scaled(total: dict[str, int], a: Vector, factor: int) -> None:
    """total += a * factor, in place: for accumulators the caller owns."""
    for name, value in a.items():
        total[name] = total.get(name, 0) + value * factor


def whole_units(have: Vector, unit: Vector) -> Vector:
    """What `have` holds of an indivisible `unit`: each of the unit's dimensions cut down to
    the whole number of units that fit (the fewest over its dimensions), the others as they
    are. `have` itself when the unit is empty."""
    fit = -1
    for name, value in unit.items():
        if value > 0:
            n = have.get(name, 0) // value
            if fit < 0 or n < fit:
                fit = n
    if fit < 0:
        return have
    out = dict(have)
    for name, value in unit.items():
        if value > 0:
            out[name] = fit * value
    return out


def canonical(a: Vector) -> str:
    """Name-sorted text of the positive dimensions, so equal amounts compare equal."""
    return ",".join(f"{name}={value}" for name, value in sorted(a.items()) if value > 0)
