"""Reading every process's /metrics, and the figures the gates need from them.

A snapshot is one scrape of every process at one moment. Figures over a window
(the soak) come from two snapshots: counters and histogram buckets are
subtracted, and a counter that went down (its process restarted) counts from
zero, as Prometheus' `increase` does.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


@dataclass
class Snapshot:
    """Samples per process: process name → {(sample name, labels): value}."""

    samples: dict[str, dict[tuple[str, Labels], float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # process → why it was not read

    def total(self, prefix: str, name: str, **labels: str) -> float | None:
        """The sum over processes named `prefix*` of samples `name` matching `labels`;
        None when no such process was read."""
        read = [p for p in self.samples if p.startswith(prefix)]
        if not read:
            return None
        wanted = set(labels.items())
        return sum(
            value
            for p in read
            for (sample, have), value in self.samples[p].items()
            if sample == name and wanted <= have
        )

    def buckets(self, prefix: str, name: str) -> dict[float, float]:
        """Cumulative histogram buckets (upper bound → count), summed over processes."""
        out: dict[float, float] = {}
        for p in self.samples:
            if not p.startswith(prefix):
                continue
            for (sample, labels), value in self.samples[p].items():
                if sample == f"{name}_bucket":
                    bound = float(dict(labels)["le"])
                    out[bound] = out.get(bound, 0.0) + value
        return out

    def to_json(self) -> dict[str, object]:
        return {
            process: [
                {"name": name, "labels": dict(labels), "value": value}
                for (name, labels), value in sorted(samples.items(), key=lambda kv: kv[0][0])
            ]
            for process, samples in self.samples.items()
        } | {"_failed": self.failed}


def parse(text: str) -> dict[tuple[str, Labels], float]:
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def read(urls: Mapping[str, str], timeout_s: float = 5.0) -> Snapshot:
    """Scrape every process; one that does not answer is listed in `failed`, not fatal."""
    snapshot = Snapshot()
    for process, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                snapshot.samples[process] = parse(response.read().decode())
        except (OSError, ValueError) as err:
            snapshot.failed[process] = str(err)
    return snapshot


def increase(end: float | None, start: float | None) -> float | None:
    """A counter's growth between two reads; a reset (restart) counts from zero."""
    if end is None:
        return None
    if start is None or end < start:
        return end
    return end - start


def window(end: Mapping[float, float], start: Mapping[float, float]) -> dict[float, float]:
    """Histogram buckets of the observations made between two snapshots."""
    if any(end.get(b, 0.0) < n for b, n in start.items()):
        return dict(end)  # a process restarted: its buckets began again from zero
    return {b: n - start.get(b, 0.0) for b, n in end.items()}


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile of cumulative buckets, interpolated within the bucket it falls in
    (as Prometheus' histogram_quantile); None with no observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    below, below_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return below  # past the largest finite bucket: its bound is all we know
            share = (rank - below_count) / (count - below_count) if count > below_count else 1
            return below + (bound - below) * share
        below, below_count = bound, count
    return None


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile of raw values; None for none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
