"""Synthetic sources at equal compute (paper, CIFAR-100: FractalDB-1k 81.6, OFDB-1k 84.0,
1p-frac 84.2), in the protocol of configs/sweep_delta_mini.py: 1000 classes each, same
steps, batch, model and augmentation.

  python -m experiments.sweep --config configs/sweep_sources_mini.py
"""

import ml_collections

from configs import sweep_delta_mini


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_mini.get_config()
    c.sweep.field = "source"  # values name configs/<value>.py source blocks
    c.sweep.grid = ("onepfrac", "fractaldb", "ofdb", "real_image")
    c.sweep.log_x = False
    c.sweep.workdir = "runs/sweep_sources_mini"
    return c
