"""`bigfleet selfcheck`: proves offline that this build speaks the contract.

Checks that the compiled wire modules match the contract field by field, that
each CRD and its typed models describe the same fields, and that the example
objects decode. Returns the findings; the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from bigfleet import wire
from bigfleet.crd import API_VERSION, GROUP, KINDS, load_crds
from bigfleet.crd.drift import compare_kind
from bigfleet.wire import contract


@dataclass(slots=True)
class Check:
    name: str
    summary: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_wire() -> Check:
    problems = contract.compare(module.DESCRIPTOR for module in wire.FILES)
    summary = (
        f"{len(contract.FILES)} files, {len(contract.MESSAGES)} messages, "
        f"{len(contract.ENUMS)} enums, {len(contract.SERVICES)} services "
        f"of {contract.PACKAGE}"
    )
    return Check("wire", summary, problems)


def check_crds(crd_dir: Path) -> Check:
    crds = load_crds(crd_dir)
    problems: list[str] = []
    for kind in KINDS:
        crd = crds.get(kind.kind)
        if crd is None:
            problems.append(f"{kind.kind}: no CRD in {crd_dir}")
            continue
        if crd["spec"]["group"] != GROUP:
            problems.append(f"{kind.kind}: group {crd['spec']['group']!r}, want {GROUP!r}")
        if (crd["spec"]["scope"] == "Namespaced") != kind.namespaced:
            problems.append(f"{kind.kind}: scope {crd['spec']['scope']} disagrees with the model")
        problems += [
            f"{kind.kind} {p}" for p in compare_kind(crd, kind.spec_type, kind.status_type)
        ]
    return Check("crds", f"{len(crds)} CRDs in group {GROUP} agree with their models", problems)


def check_examples(example_dir: Path) -> Check:
    by_kind = {kind.kind: kind for kind in KINDS}
    problems: list[str] = []
    paths = sorted(example_dir.glob("*.yaml"))
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            kind = by_kind.get(document.get("kind", ""))
            if kind is None or document.get("apiVersion") != API_VERSION:
                problems.append(f"{path.name}: not a {API_VERSION} object")
                continue
            try:
                kind.spec_type.from_object(document.get("spec"))
            except ValidationError as err:
                problems.append(f"{path.name}: {err}")
    return Check("examples", f"{len(paths)} example objects decode", problems)


def run(crd_dir: Path) -> list[Check]:
    return [check_wire(), check_crds(crd_dir), check_examples(crd_dir / "examples")]
