"""Sigma-factor sweep at CPU scale (paper, CIFAR-100: sigma 3.5 / 5.0 / 6.0 -> 84.2 / 82.2 /
81.3), in the protocol of configs/sweep_delta_mini.py.

  python -m experiments.sweep --config configs/sweep_sigma_mini.py
"""

import ml_collections

from configs import sweep_delta_mini


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_mini.get_config()
    c.sweep.field = "source.sigma"
    c.sweep.grid = (3.5, 5.0, 6.0)
    c.sweep.log_x = False
    c.sweep.workdir = "runs/sweep_sigma_mini"
    return c
