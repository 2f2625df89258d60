"""Marks each test with its tier, from the folder it lives in; skips the tests that
patch the engine's Python internals where the engine runs compiled (scripts/test.sh
runs them again in its Python-engine pass)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigfleet.shard import engine

_TIERS = {"cluster": pytest.mark.cluster}
_COMPILED = pytest.mark.skip(
    reason="patches the engine's Python functions, which the compiled engine does not call; "
    "runs in the Python-engine pass (BIGFLEET_ENGINE=python)"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).parent.name
        if tier in _TIERS:
            item.add_marker(_TIERS[tier])
        if engine.BUILD == "compiled" and item.get_closest_marker("python_engine"):
            item.add_marker(_COMPILED)
