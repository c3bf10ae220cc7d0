"""Statistics over seeds for sweeps: mean, spread, and paired differences to a baseline.

A sweep evaluates every point with several seeds, and a random init with the same seeds
(the same init key as the pre-trained model of that seed), so each seed gives a paired
difference "pre-trained minus random init". The interval of the mean difference is a
Student t interval over seeds (n - 1 degrees of freedom): it treats seeds as the unit of
replication and the test set as fixed, so it says how far the effect of pre-training on
*this* test set would move with another seed, not how it would move with another test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _stats


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, sample standard deviation (ddof 1; 0 for one value), n)``."""
    a = np.asarray(values, np.float64)
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return float(a.mean()), sd, len(a)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the Student t interval of the mean; NaN bounds for one value."""
    mean, sd, n = mean_sd(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = _stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def group_of(row: dict) -> object:
    """The summary group of a sweep row: 'random init' for the baseline, else its value."""
    return "random init" if row["init"] == "random" else row["value"]


def summarize(
    rows: Sequence[dict],
    metrics: Sequence[str],
    level: float = 0.95,
    baseline: object = "random init",
) -> list[dict]:
    """One dict per swept value (and one for the random init), in first-seen order.

    Args:
      rows: sweep rows with ``init`` ('pretrained', 'random' or 'control'), ``value``,
        ``seed`` and the metrics.
      metrics: the metric keys to summarise.
      baseline: the group (:func:`group_of`) every other group is paired with, seed by
        seed: the random init, or a control such as the drift control.

    Returns:
      Dicts with ``value`` ('random init' for the random init), ``seeds`` (n), and per metric
      ``<m>_mean``, ``<m>_sd``, and for the other groups with a baseline row of the same
      seeds ``<m>_diff`` (mean paired difference), ``<m>_diff_lo``, ``<m>_diff_hi`` (its
      ``level`` t interval over seeds) and ``<m>_diff_seeds`` (how many seeds were paired).
    """
    base = {r["seed"]: r for r in rows if group_of(r) == baseline}
    groups: dict = {}
    for r in rows:
        groups.setdefault(group_of(r), []).append(r)
    out = []
    for value, rs in groups.items():
        s = {"value": value, "seeds": len(rs)}
        for m in metrics:
            s[f"{m}_mean"], s[f"{m}_sd"], _ = mean_sd([r[m] for r in rs])
            paired = [r[m] - base[r["seed"]][m] for r in rs if r["seed"] in base]
            if value != baseline and paired:
                d, lo, hi = t_interval(paired, level)
                s.update({f"{m}_diff": d, f"{m}_diff_lo": lo, f"{m}_diff_hi": hi})
                s[f"{m}_diff_seeds"] = len(paired)
        out.append(s)
    return out
