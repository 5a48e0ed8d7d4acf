"""Summaries of repeated measurements: median, min and max, and ratios between systems."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Summary:
    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, samples: list[float]) -> Summary:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}


def ratio(ours: float, theirs: float) -> float:
    """How many times ours is theirs (for a time: below 1 means we are faster)."""
    return ours / theirs if theirs else float("inf")
