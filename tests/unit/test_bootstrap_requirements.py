"""Requirements no node can meet are answered with an error instead of a join blob."""

from __future__ import annotations

from bigfleet.operators.operator.bootstrap import unsatisfiable


def req(key: str, operator: str, *values: str) -> dict[str, object]:
    return {"key": key, "operator": operator, "values": list(values)}


def test_satisfiable_requirements_pass() -> None:
    assert (
        unsatisfiable(
            [req("zone", "In", "a", "b"), req("zone", "NotIn", "a"), req("gpu", "Exists")]
        )
        is None
    )


def test_contradictions_are_named() -> None:
    assert unsatisfiable([req("zone", "In", "a"), req("zone", "NotIn", "a")]) == (
        "no value of label zone satisfies every requirement"
    )
    assert unsatisfiable([req("zone", "In", "a"), req("zone", "In", "b")]) is not None
    assert unsatisfiable([req("gpu", "Exists"), req("gpu", "DoesNotExist")]) == (
        "label gpu must both exist and not exist"
    )
