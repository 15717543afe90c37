"""The 95 % confidence interval, defined once (DESIGN.md section 5): Student t on n - 1 degrees of freedom.

Every reported team return (``kdmarl evaluate`` for teachers and for bundles, distillation reports, the
benchmarks) carries this interval, so two tables built from the same seeds agree to the last digit. scipy
is there wherever an evaluation runs (mpe2 requires it); robots never import this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def t95(n: int) -> float:
    """Two-sided 95 % quantile of Student's t for a sample of ``n`` (n - 1 dof); NaN below two samples."""
    if n < 2:
        return float("nan")
    from scipy.stats import t as student_t  # noqa: PLC0415  offline only

    return float(student_t.ppf(0.975, n - 1))


def ci95_half_width(std: float, n: int) -> float:
    """Half-width of the 95 % interval of a mean from its sample standard deviation (ddof=1); NaN if n < 2."""
    return t95(n) * std / math.sqrt(n) if n >= 2 else float("nan")


def mean_ci(values: Iterable[float] | np.ndarray) -> dict[str, float]:
    """Mean, sample standard deviation (ddof=1) and 95 % interval of a sample: the one summary of every reported
    figure (teacher and bundle evaluation, distillation reports, sweeps), so their tables agree. With fewer than
    two values the spread is undefined and says so: std, ci95, low and high are NaN (with none, the mean too)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = int(x.size)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n >= 2 else float("nan")
    half = ci95_half_width(std, n)
    return {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "std": std, "n": n}


__all__ = ["ci95_half_width", "mean_ci", "t95"]
