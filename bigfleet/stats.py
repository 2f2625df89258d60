"""Percentiles for benchmark figures and status fields, one definition everywhere."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def p50_p99(samples: Iterable[float]) -> tuple[float, float]:
    """Median and 99th percentile (the sample nearest rank 0.99 x (n - 1)); zeros when empty."""
    ordered = sorted(samples)
    if not ordered:
        return 0.0, 0.0
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def percentiles(samples: Iterable[float], scale: float = 1.0, digits: int = 3) -> dict[str, float]:
    """{"p50", "p99"} of `samples` times `scale` (1000 for seconds to ms), rounded."""
    p50, p99 = p50_p99(samples)
    return {"p50": round(p50 * scale, digits), "p99": round(p99 * scale, digits)}
