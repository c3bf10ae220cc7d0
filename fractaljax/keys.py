"""The named PRNG key streams of a run: every random draw of fractaljax starts from one.

A run with ``seed`` has one root key, ``jax.random.key(seed)``, and each consumer folds in
its own constant: ``stream(seed, 'init')`` initialises the model, ``'data'`` draws the
pre-training batches (``fold_in(stream, step)``), ``'step'`` the augmentation and dropout of
a step, ``'eval'`` the fixed evaluation batch, and each source's construction (the 1p-frac
base fractal and perturbations, the OFDB bank, the real image's warps, FractalDB's category
search, the contour classes, the dead-leaves images) has a stream of its own. Distinct
constants give independent streams; before they were named, the OFDB bank shared its key
with the step stream and the real-image warps with the evaluation batch.

The values of the first streams (init 0, data 1, step 2, eval 3, 1p-frac 0x1F5C) are kept
from earlier versions, so 1p-frac runs and their results are unchanged.
"""

from __future__ import annotations

import jax

from fractaljax.errors import ConfigError

STREAMS: dict[str, int] = {
    "init": 0,  # model parameters
    "data": 1,  # pre-training batches: labels and fresh renders, fold_in(., step)
    "step": 2,  # augmentation and dropout, fold_in(., step)
    "eval": 3,  # the fixed evaluation batch of the pre-training task
    "onepfrac": 0x1F5C,  # 1p-frac: base fractal, perturbations, fixed walk and patches
    "ofdb": 0x0FDB,  # OFDB: the one drawing of each category
    "real_image": 0x1AE6,  # one real image: the L affine warps
    "fractaldb": 0xFDB1,  # FractalDB: the category search (candidates and test walks)
    "radial_contour": 0x2CDB,  # RCDB: the class draws
    "visual_atom": 0x7A70,  # VisualAtom: the class draws
    "dead_leaves": 0xDEAD,  # dead leaves: each class's image
}


def check_seed(seed: int) -> None:
    """A ConfigError unless ``seed`` is an int32 >= 0: compiled steps take it as an array."""
    if not (isinstance(seed, int) and 0 <= seed < 2**31):
        raise ConfigError(f"seed={seed}: must be an integer in [0, 2**31)")


def stream(seed: int | jax.Array, name: str) -> jax.Array:
    """The key of stream ``name`` (one of :data:`STREAMS`) of a run with ``seed`` (an int, or
    an int32 array traced inside a compiled step)."""
    if name not in STREAMS:
        raise KeyError(f"no key stream {name!r}; streams: {', '.join(STREAMS)}")
    return jax.random.fold_in(jax.random.key(seed), STREAMS[name])
