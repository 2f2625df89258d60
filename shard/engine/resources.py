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


def covers(have: Vector, want: Vector) -> bool:
    """Every dimension of `want` is met by `have`."""
    return all(have.get(name, 0) >= value for name, value in want.items())


def is_zero(a: Vector) -> bool:
    return all(value <= 0 for value in a.values())


def canonical(a: Vector) -> str:
    """Name-sorted text of the positive dimensions, so equal amounts compare equal."""
    return ",".join(f"{name}={value}" for name, value in sorted(a.items()) if value > 0)
