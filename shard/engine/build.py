"""Which engine this process runs: the compiled hot modules, or their Python source.

The package build compiles the engine's hot modules with mypyc next to their
sources and records each source's digest in `compiled.json` (hatch_build.py,
ADR 0023). The compiled modules are imported only while every digest still
matches, so an edited source runs as Python until the next install compiles it
again.

BIGFLEET_ENGINE chooses: `auto` (the default) takes the compiled modules when
they are current; `python` always takes the source (the reference the compiled
engine is tested against); `compiled` makes a missing or stale build an import
error, so a run meant to measure the compiled engine cannot measure the other.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]
HERE = Path(__file__).parent
MANIFEST = HERE / "compiled.json"
CHOICES = ("auto", "python", "compiled")


class EngineBuildError(ImportError):
    """BIGFLEET_ENGINE asks for what this installation cannot give."""


def _source(module: str) -> Path:
    """The .py file of an engine submodule."""
    return HERE.joinpath(*module.removeprefix(PACKAGE + ".").split(".")).with_suffix(".py")


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Loads the named engine modules from their .py files, passing over the
    extension modules that Python's own finder would prefer."""

    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


def _compiled_modules() -> dict[str, str]:
    """Module name -> digest of the source it was compiled from; empty when none was."""
    if not MANIFEST.exists():
        return {}
    return dict(json.loads(MANIFEST.read_text())["modules"])


def _stale(modules: dict[str, str]) -> list[str]:
    stale = []
    for name, digest in modules.items():
        source = _source(name)
        if not source.exists() or hashlib.sha256(source.read_bytes()).hexdigest() != digest:
            stale.append(name)
    return stale


def _all_modules() -> set[str]:
    """Every engine submodule: an extension left without a manifest is passed over too."""
    return {
        ".".join((PACKAGE, *p.relative_to(HERE).with_suffix("").parts))
        for p in HERE.rglob("*.py")
        if p.name != "__init__.py"
    }


def select(wanted: str | None = None) -> str:
    """Install the import rule for this process; returns "compiled" or "python"."""
    wanted = wanted or os.environ.get("BIGFLEET_ENGINE") or "auto"
    if wanted not in CHOICES:
        raise EngineBuildError(f"BIGFLEET_ENGINE={wanted!r}: expected one of {', '.join(CHOICES)}")
    if wanted == "python":
        sys.meta_path.insert(0, _SourceFirst(_all_modules()))
        return "python"
    modules = _compiled_modules()
    stale = _stale(modules)
    if not modules:
        problem = "the engine was not compiled at install"
    elif stale:
        problem = f"its compiled modules are older than their sources ({', '.join(sorted(stale))})"
    else:
        return "compiled"
    if wanted == "compiled":
        raise EngineBuildError(f"BIGFLEET_ENGINE=compiled, but {problem}")
    sys.meta_path.insert(0, _SourceFirst(_all_modules()))
    if stale:
        warnings.warn(
            f"running the Python engine: {problem}; install again to compile it", stacklevel=2
        )
    return "python"
