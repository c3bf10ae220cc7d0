"""Ablation at Delta 0.1: the official speckled patches ('paste': every point pastes its whole
3x3 mask, zero cells included, the last point wins) against OR-ed patches ('union': lit cells
only, what fractaljax drew before it followed the official code), in the protocol of
configs/sweep_delta_mini.py. What does patch texture do to transfer?

  python -m experiments.sweep --config configs/sweep_patch_mini.py
"""

import ml_collections

from configs import sweep_delta_mini


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_mini.get_config()
    c.sweep.field = "render.patch"
    c.sweep.grid = ("paste", "union")
    c.sweep.log_x = False
    c.sweep.workdir = "runs/sweep_patch_mini"
    return c
