"""Ablation at Delta 0.1: the official fixed data set (one image per class, L images in all)
against fresh rendering at every step (a new walk and patch mask for every example, the
LIEP classes unchanged), in the protocol of configs/sweep_delta_mini.py. Does seeing the
same L images again and again cost transfer?

  python -m experiments.sweep --config configs/sweep_data_mini.py
"""

import ml_collections

from configs import sweep_delta_mini


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_mini.get_config()
    c.sweep.field = "source.data"
    c.sweep.grid = ("fixed", "stream")
    c.sweep.log_x = False
    c.sweep.workdir = "runs/sweep_data_mini"
    return c
