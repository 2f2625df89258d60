"""Every third-party package the installed code imports is declared in pyproject.toml,
not merely present because something else pulled it in. A package of an optional extra
(`bigfleet[plot]`) is imported only inside functions, so importing bigfleet never needs it."""

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
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Extras for developers and CI, not for features of the installed code.
TOOLING_EXTRAS = {"test", "e2e"}


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level name, imported at module level) for every absolute import in `tree`."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, eager: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], eager) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], eager))
        inside = eager and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, True)
    return found


def _imported_top_levels() -> dict[str, bool]:
    """Third-party top-level name -> whether some module imports it at module level."""
    found: dict[str, bool] = {}
    for folder in SHIPPED:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            for name, eager in _imports(ast.parse(path.read_text(), str(path))):
                found[name] = found.get(name, False) or eager
    return {
        name: eager
        for name, eager in found.items()
        if name not in sys.stdlib_module_names and name != "bigfleet"
    }


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_normal(re.split(r"[<>=!~\[;\s]", d)[0]) for d in requirements}


def test_every_imported_package_is_a_declared_dependency() -> None:
    declared = _names(PROJECT["dependencies"])
    optional = _names(
        [
            d
            for extra, deps in PROJECT["optional-dependencies"].items()
            if extra not in TOOLING_EXTRAS
            for d in deps
        ]
    )
    providers = importlib.metadata.packages_distributions()
    undeclared, eager_optional = {}, {}
    for module, eager in sorted(_imported_top_levels().items()):
        dists = {_normal(d) for d in providers.get(module, [])}
        if declared & dists:
            continue
        if optional & dists and not eager:
            continue  # an optional extra's package, imported where it is used
        (eager_optional if optional & dists else undeclared)[module] = providers.get(
            module, ["(not installed)"]
        )
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"
    assert not eager_optional, (
        f"an optional extra's package imported at module level: {eager_optional}; "
        "import it inside the function that needs it"
    )


def test_a_function_level_import_is_told_from_a_module_level_one() -> None:
    tree = ast.parse(
        "import a\nif x:\n    from b import c\ndef f():\n    import d\n"
        "class K:\n    def m(self):\n        from e import g\n"
    )
    assert _imports(tree) == [("a", True), ("b", True), ("d", False), ("e", False)]


def test_every_optional_extra_s_package_is_also_in_the_test_extra() -> None:
    # CI installs `test` only, so the code behind an extra is exercised there too.
    extras = PROJECT["optional-dependencies"]
    test = set(extras["test"])
    for name, deps in extras.items():
        if name not in TOOLING_EXTRAS:
            assert set(deps) <= test, name
