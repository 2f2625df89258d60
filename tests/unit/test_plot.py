"""Charts of a run's series (bigfleet.plot) and `bigfleet sim run --plot`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigfleet import plot
from bigfleet.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _panels() -> list[plot.Panel]:
    return [
        plot.Panel("machines", {"demand": [4, 8, 8, 8], "Configured": [0, 4, 8, 8]}),
        plot.Panel("churn", {"Bootstrap": [4, 4, 0, 0], "Reclaim": [0, 1, 0, 0]}, stacked=True),
    ]


def test_draw_writes_a_png_of_two_panels(tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    plot.draw(out, "a run", "cycle", [1, 2, 3, 4], _panels())
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000  # two panels with axes, legends and lines, not an empty canvas


def test_draw_writes_svg_by_the_suffix(tmp_path: Path) -> None:
    out = tmp_path / "run.svg"
    plot.draw(out, "a run", "cycle", [1, 2, 3, 4], _panels())
    text = out.read_text()
    assert "<svg" in text
    assert "Configured" in text  # the legend, as text


def test_series_of_unequal_length_are_refused_naming_the_series(tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    panels = [plot.Panel("machines", {"Configured": [1, 2, 3], "demand": [1, 2]})]
    with pytest.raises(ValueError, match=r"'machines'.*'demand' has 2 values for 3 x values"):
        plot.draw(out, "a run", "cycle", [1, 2, 3], panels)
    assert not out.exists()


def test_a_suffix_other_than_png_or_svg_is_refused(tmp_path: Path) -> None:
    for name in ("run.html", "run.pdf", "run"):
        with pytest.raises(ValueError, match=r"\.png or \.svg"):
            plot.draw(tmp_path / name, "a run", "cycle", [1, 2, 3, 4], _panels())
    assert not list(tmp_path.iterdir())


def test_no_panel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no panel"):
        plot.draw(tmp_path / "run.png", "a run", "cycle", [1], [])


def test_sim_run_plot_draws_the_run_and_keeps_the_table(tmp_path: Path) -> None:
    out = tmp_path / "charts" / "run.png"
    result = CliRunner().invoke(
        main, ["sim", "run", "priority-inversion", "--cycles", "5", "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "as expected" in result.output  # the table is still printed
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000  # three panels of a real run


def test_sim_run_refuses_a_bad_plot_suffix_naming_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    result = CliRunner().invoke(main, ["sim", "run", "priority-inversion", "--plot", str(out)])
    assert result.exit_code == 2
    assert "'--plot'" in result.output
    assert ".png or .svg" in result.output
    assert "as expected" not in result.output  # refused before the run
    assert not out.exists()


def test_sim_run_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    out = tmp_path / "run.png"
    result = CliRunner().invoke(main, ["sim", "run", "priority-inversion", "--plot", str(out)])
    assert result.exit_code == 2
    assert "'--plot'" in result.output
    assert "bigfleet[plot]" in result.output
    assert not out.exists()


def test_importing_bigfleet_never_imports_matplotlib() -> None:
    script = (
        "import sys\n"
        "import bigfleet.plot, bigfleet.cli, bigfleet.cli.sim, bigfleet.sim.report\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_sim_panels_leave_demand_out_when_it_is_unknown() -> None:
    from bigfleet.sim.report import panels
    from bigfleet.sim.runner import CycleCounts, RunResult, Trace

    kinds = {"Bootstrap": 1, "Provision": 0, "Preempt": 0, "Reclaim": 0, "Delete": 0}
    counts = [CycleCounts(actions=kinds, configured=1, shortfalls=0, demand=None)] * 3
    machines, churn, shortfalls = panels(RunResult("s", 1, Trace(), {}, [], counts))
    assert list(machines.series) == ["Configured"]
    assert list(churn.series) == list(kinds) and churn.stacked
    assert shortfalls.series == {"shortfalls": [0, 0, 0]}
