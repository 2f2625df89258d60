"""Finding and reading the CRD manifests (crds/*.yaml) shipped with BigFleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_SOURCE_TREE = Path(__file__).resolve().parents[2] / "crds"
_WHEEL = Path(__file__).resolve().parent / "manifests"


def crd_dir() -> Path:
    """crds/ of a source checkout, else the copy packaged into the wheel."""
    for candidate in (_SOURCE_TREE, _WHEEL):
        if any(candidate.glob("*.yaml")):
            return candidate
    raise FileNotFoundError(f"no CRD manifests in {_SOURCE_TREE} or {_WHEEL}")


def load_crds(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every CustomResourceDefinition under `directory`, by kind."""
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted((directory or crd_dir()).glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if document.get("kind") != "CustomResourceDefinition":
            raise ValueError(f"{path} is not a CustomResourceDefinition")
        crds[document["spec"]["names"]["kind"]] = document
    return crds
