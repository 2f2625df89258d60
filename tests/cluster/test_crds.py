"""The CRDs install on a real API server and serve what `kubectl` users rely on."""

from __future__ import annotations

import json
from pathlib import Path

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import GROUP, KINDS, load_crds


def test_every_crd_is_established_and_served(control_plane: LocalControlPlane) -> None:
    out = control_plane.kubectl("get", "crd", "-o", "json").stdout
    served = {
        item["spec"]["names"]["kind"]: item
        for item in json.loads(out)["items"]
        if item["spec"]["group"] == GROUP
    }
    assert set(served) == {kind.kind for kind in KINDS}
    for kind, crd in served.items():
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", kind
        assert conditions.get("NamesAccepted") == "True", kind


def test_kubectl_apply_of_the_crd_directory_is_idempotent(
    control_plane: LocalControlPlane, crds_path: Path
) -> None:
    result = control_plane.kubectl("apply", "-f", str(crds_path))
    assert result.stdout.count("customresourcedefinition") == len(load_crds(crds_path))


def test_short_names_and_the_fleet_category_resolve(
    control_plane: LocalControlPlane, crds_path: Path
) -> None:
    resources = control_plane.kubectl("api-resources", f"--api-group={GROUP}", "-o", "wide").stdout
    for short in ("cr", "crs", "upn", "avc", "shd"):
        assert short in resources
    # `kubectl get fleet` lists every BigFleet kind at once.
    result = control_plane.kubectl("get", "fleet", "-A", "--ignore-not-found")
    assert result.returncode == 0


def test_kubectl_explain_shows_our_descriptions(control_plane: LocalControlPlane) -> None:
    text = control_plane.kubectl("explain", "capacityrequests.spec.interruptionPenalty").stdout
    assert "interrupted" in text
    text = control_plane.kubectl("explain", "shards.spec.dryRun").stdout
    assert "execute nothing" in text


def test_example_objects_apply_cleanly(control_plane: LocalControlPlane, crds_path: Path) -> None:
    examples = crds_path / "examples"
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", str(examples))
    assert result.stdout.count("created (server dry run)") == len(list(examples.glob("*.yaml")))
