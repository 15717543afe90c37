"""The statistics of a sweep: paired comparisons of a variant against the reference on the same replicates
(paired t-test, Cohen's d_z, a paired bootstrap interval). Means and intervals of one variant are
`kdmarl_student.stats.mean_ci`, the summary of every reported figure."""

from __future__ import annotations

import math
from typing import Any

BOOTSTRAP_RESAMPLES = 10_000


BOOTSTRAP_SEED = 0  # fixed: the paired bootstrap interval is reproducible


ALPHA = 0.05


def paired(values: list[float], reference: list[float]) -> dict[str, Any]:
    """Paired comparison on the same replicates: mean difference (values - reference), paired t-test p-value
    (scipy.stats.ttest_rel, two-sided), Cohen's d_z = mean(d) / std(d, ddof=1), and the paired bootstrap 95 %
    interval of the mean difference (percentiles of BOOTSTRAP_RESAMPLES resamples of the pairs, fixed seed)."""
    import numpy as np  # noqa: PLC0415
    from scipy import stats  # noqa: PLC0415

    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    d = a - b
    n = len(d)
    out: dict[str, Any] = {"n_pairs": n, "mean_diff": float(d.mean()) if n else float("nan")}
    sd = float(d.std(ddof=1)) if n >= 2 else float("nan")
    out["std_diff"] = sd
    if n >= 2 and sd > 0:
        out["t"], out["p_value"] = (float(v) for v in stats.ttest_rel(a, b))
        out["d_z"] = float(d.mean() / sd)
    else:
        out["t"] = out["p_value"] = out["d_z"] = float("nan")
    if n >= 2:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        means = d[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
        out["boot_low"], out["boot_high"] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    else:
        out["boot_low"] = out["boot_high"] = float("nan")
    p = out["p_value"]
    if n < 2 or math.isnan(p):
        out["verdict"] = "cannot tell (fewer than 2 pairs or no variation)"
    elif p < ALPHA:
        out["verdict"] = ("higher" if out["mean_diff"] > 0 else "lower") + f" than the reference (p < {ALPHA})"
    else:
        out["verdict"] = f"cannot tell apart at {n} seeds (p = {p:.2g})"
    return out
