"""Number of perturbations L at CPU scale (paper, CIFAR-100: L = 16 -> 78.7, L = 1000 ->
84.2), in the protocol of configs/sweep_delta_mini.py (same steps and batch for every L).

  python -m experiments.sweep --config configs/sweep_classes_mini.py
"""

import ml_collections

from configs import sweep_delta_mini


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_mini.get_config()
    c.sweep.field = "source.num_classes"
    c.sweep.grid = (16, 100, 1000)
    c.sweep.log_x = True
    c.sweep.workdir = "runs/sweep_classes_mini"
    return c
