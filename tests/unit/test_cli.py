"""`bigfleet` lists every subcommand; selfcheck and version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bigfleet.cli import main
from bigfleet.crd import crd_dir


def test_help_lists_every_subcommand() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    # Command rows start with two spaces then the name; wrapped text is indented deeper.
    names = {
        line.split()[0]
        for line in result.output.splitlines()
        if line.startswith("  ") and line[2] not in " -"
    }
    assert {
        "selfcheck", "shard", "coordinator", "ctl", "all-in-one", "bench", "operator",
        "pod-controller", "provider", "conformance", "sim",
    } <= names  # fmt: skip
    assert "not built yet" not in result.output
    bench = CliRunner().invoke(main, ["bench", "--help"])
    assert {"engine", "shard", "coordinator", "chain"} <= {
        line.split()[0] for line in bench.output.splitlines() if line.startswith("  ")
    }


def test_selfcheck_passes_on_this_build() -> None:
    result = CliRunner().invoke(main, ["selfcheck"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "3 passed, 0 failed"


def test_selfcheck_fails_on_a_crd_that_drifted_from_its_model(tmp_path: Path) -> None:
    broken = tmp_path / "crds"
    shutil.copytree(crd_dir(), broken)
    path = broken / "bigfleet.lucy.sh_shards.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["dryRun"]
    path.write_text(yaml.safe_dump(crd))

    result = CliRunner().invoke(main, ["selfcheck", "--crds", str(broken)])
    assert result.exit_code == 1
    assert "FAIL crds" in result.output
    assert "Shard spec.dryRun: in ShardSpec, not in the CRD schema" in result.output
    assert result.output.splitlines()[-1] == "2 passed, 1 failed"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.output.strip() == "bigfleet, version 0.1.0"


def test_conformance_reports_durability_as_skipped_without_a_provider_command() -> None:
    listed = CliRunner().invoke(main, ["conformance", "--target", "x:1", "--list"])
    assert "durability/fences: " in listed.output
    # Skipped checks dial nothing, so no provider is needed; nothing held, so exit 1.
    result = CliRunner().invoke(
        main, ["conformance", "--target", "127.0.0.1:1", "--only", "durability/*"]
    )
    assert result.exit_code == 1
    assert "SKIP durability/machines" in result.output
    assert "needs --provider-command" in result.output
    assert result.output.splitlines()[-1] == "0 passed, 0 failed, 5 skipped"


def test_conformance_refuses_a_provider_command_that_does_not_split() -> None:
    for command in ("", "   ", "'unbalanced"):
        argv = ["conformance", "--target", "x:1", "--provider-command", command]
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 2, command
        assert "--provider-command" in result.output


def test_fake_provider_refuses_a_corrupt_state_file_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "fake.json"
    state.write_text('{"version": 1}')
    argv = ["provider", "fake", "--listen", "127.0.0.1:0", "--state", str(state)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1
    assert str(state) in result.output and "not a fake provider state file" in result.output
    assert state.read_text() == '{"version": 1}'  # left for a person to look at
    assert "--state FILE" in CliRunner().invoke(main, ["provider", "fake", "--help"]).output


@pytest.mark.parametrize(("given", "seed"), [("7", 7), ("0xCAFEBABE", 0xCAFEBABE), ("1_000", 1000)])
def test_seeds_are_decimal_or_hex(given: str, seed: int) -> None:
    from bigfleet.cli.options import SEED

    assert SEED.convert(given, None, None) == seed


@pytest.mark.parametrize("given", ["nope", "-1", "0xZZ"])
def test_a_bad_seed_is_refused_naming_the_flag(given: str) -> None:
    result = CliRunner().invoke(main, ["sim", "run", "soak", "--seed", given])
    assert result.exit_code == 2
    assert "Invalid value for '--seed'" in result.output
