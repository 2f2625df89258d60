"""Charts of a run's series for people: stacked panels over one shared x axis.

The simulator and the scale test draw their per-cycle (or per-sample) series
with `draw`, so a run's convergence or oscillation shows at a glance. Only
tooling uses it; no component imports it (an import-linter contract).

matplotlib is the optional extra `bigfleet[plot]` and is imported only inside
`draw` and `require`, so importing bigfleet never needs it. Drawing goes
through matplotlib's object API on the Agg canvas: no pyplot, no global
backend switch, no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# What `draw` writes, by file suffix.
FORMATS = {".png": "png", ".svg": "svg"}
INSTALL_HINT = "pip install 'bigfleet[plot]'"
LINE_STYLES = ("-", "--", "-.", ":")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class Panel:
    """One chart: named series, each with one value per x value, drawn in order.

    `stacked` stacks the series as areas (parts of a total, e.g. actions by kind);
    otherwise each is a line.
    """

    title: str
    series: Mapping[str, Sequence[float]] = field(default_factory=dict)
    y_label: str = ""
    stacked: bool = False


def check_path(path: Path) -> str:
    """The format `path` asks for by its suffix; ValueError for any other suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path.name}: a chart is written as {' or '.join(FORMATS)} "
            f"(by the file's suffix), not {path.suffix or 'a file without a suffix'}"
        )
    return fmt


def require() -> None:
    """Raise PlotUnavailable, naming the extra to install, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise PlotUnavailable(f"drawing charts needs matplotlib: {INSTALL_HINT}") from err


def check(x: Sequence[float], panels: Sequence[Panel]) -> None:
    """ValueError unless there is a panel and every series has one finite value per x."""
    if not panels:
        raise ValueError("nothing to draw: no panel")
    for panel in panels:
        for name, values in panel.series.items():
            if len(values) != len(x):
                raise ValueError(
                    f"panel {panel.title!r}: series {name!r} has {len(values)} values "
                    f"for {len(x)} x values; every series needs one value per x"
                )
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"panel {panel.title!r}: series {name!r} has a non-finite value")


def draw(path: Path, title: str, x_label: str, x: Sequence[float], panels: Sequence[Panel]) -> None:
    """Write `panels`, one above the other over the shared axis `x`, to `path`.

    PNG or SVG by the suffix of `path` (ValueError for any other, and for a series
    whose length differs from `x`); PlotUnavailable without matplotlib.
    """
    fmt = check_path(path)
    check(x, panels)
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 1.2 + 2.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    xs = [float(v) for v in x]
    for ax, panel in zip(axes, panels, strict=True):
        names = list(panel.series)
        values = [[float(v) for v in panel.series[n]] for n in names]
        if not names:
            ax.text(0.5, 0.5, "no series", ha="center", va="center", transform=ax.transAxes)
        elif panel.stacked:
            ax.stackplot(xs, *values, labels=names, step="mid", alpha=0.85)
        else:
            # Later lines dashed, so one that runs on top of another leaves both visible.
            for i, (name, ys) in enumerate(zip(names, values, strict=True)):
                style = LINE_STYLES[i % len(LINE_STYLES)]
                ax.plot(xs, ys, style, label=name, linewidth=1.4, drawstyle="steps-mid")
        flat = [v for ys in values for v in ys]
        if flat and min(flat) >= 0:
            ax.set_ylim(0, None if max(flat) > 0 else 1)  # counts are read against zero
        if flat and all(v.is_integer() for v in flat):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.title, loc="left", fontsize="medium")
        if panel.y_label:
            ax.set_ylabel(panel.y_label)
        ax.grid(True, alpha=0.3)
        if names:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    axes[-1].set_xlabel(x_label)
    if all(v.is_integer() for v in xs):  # cycles: no tick between two of them
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=fmt, dpi=100)
