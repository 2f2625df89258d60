"""Every third-party package the installed code imports is declared in pyproject.toml,
not merely present because something else pulled it in."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The folders the wheel ships (the `bigfleet` package and the components it links in).
SHIPPED = ["bigfleet", "bench", "cli", "conformance", "controlplane", "coordinator",
           "operators", "providers_fake", "shard", "sim"]  # fmt: skip


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for folder in SHIPPED:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"bigfleet"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normal(re.split(r"[<>=!~\[;\s]", d)[0]) for d in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = {
        module: providers.get(module, ["(not installed)"])
        for module in sorted(_imported_top_levels())
        if not declared & {_normal(d) for d in providers.get(module, [])}
    }
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"
