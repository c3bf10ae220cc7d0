"""Number of perturbations L in the small protocol (paper, CIFAR-100: L = 16 -> 78.7,
L = 1000 -> 84.2), with the steps and batch of configs/sweep_delta_small.py for every L.

  python -m experiments.sweep --config configs/sweep_classes_small.py
"""

import ml_collections

from configs import sweep_delta_small


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_small.get_config()
    c.sweep.field = "source.num_classes"
    c.sweep.grid = (16, 100, 1000)
    c.sweep.controls = {}  # the Delta sweep's drift control is this sweep's too
    c.sweep.paired_with = (16,)  # the protocol's own L, seed by seed
    c.sweep.workdir = "runs/sweep_classes_small"
    # Minutes after which no new point starts (one under way finishes); 0: no limit.
    c.sweep.time_budget_minutes = 0.0
    return c
