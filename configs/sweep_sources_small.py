"""Synthetic sources at equal compute in the small protocol (paper, CIFAR-100: FractalDB-1k
81.6, OFDB-1k 84.0, 1p-frac 84.2, one real image 82.2; RCDB-1k 82.4 in the RCDB paper): the
same number of classes, steps, batch, model and augmentation for each, from
configs/<source>.py:small (RCDB and VisualAtom: 256 fixed images a class, rendered into a
device bank at start-up, minutes on the CPU for VisualAtom's 200-1000-vertex orbits).

  python -m experiments.sweep --config configs/sweep_sources_small.py
"""

import ml_collections

from configs import sweep_delta_small


def get_config() -> ml_collections.ConfigDict:
    c = sweep_delta_small.get_config()
    c.sweep.field = "source"  # values name configs/<value>.py source blocks
    c.sweep.grid = (
        "onepfrac", "fractaldb", "ofdb", "real_image", "radial_contour", "visual_atom",
        "dead_leaves",
    )  # fmt: skip
    c.sweep.controls = {}
    c.sweep.paired_with = ("onepfrac",)  # every source against 1p-frac, seed by seed
    c.sweep.log_x = False
    c.sweep.workdir = "runs/sweep_sources_small"
    # Minutes after which no new point starts (one under way finishes); 0: no limit.
    c.sweep.time_budget_minutes = 0.0
    return c
