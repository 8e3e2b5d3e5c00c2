"""Measuring and reporting: best and median of repeats, latency percentiles, one table with a ratio column."""

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Repeated wall-clock measurements of one thing, in seconds."""

    samples: list[float]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def measure(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times unmeasured, then ``repeat`` times measured."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing(samples)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) of ``values`` by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def header(title: str) -> None:
    """Print what is measured and on what machine."""
    print(f"# {title}")
    print(f"# python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")


def table(rows: Sequence[Sequence[object]], columns: Sequence[str]) -> None:
    """Print an aligned text table."""
    cells = [[str(c) for c in columns], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1000 else f"{value:.0f}"
    return str(value)
