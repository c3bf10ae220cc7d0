"""Synthetic data sources: pure functions ``(key, step) -> (images, labels)``.

A :class:`Source` holds everything that is fixed for a run (for 1p-frac: the table of L
perturbed systems, computed once from the seed) and renders batches on device, so a
pre-training step can call ``source.batch(key, step, batch_size)`` inside ``jit``. The
stream is a pure function of (key, step): a resumed run sees the batches it would have seen.
The arrays a source draws from are ``source.arrays``, which a compiled step takes as an
argument and rebinds with ``source.with_arrays`` (one program for every seed).

Sources (``config.source.name``), one module each:

* ``onepfrac``: 1p-frac, L perturbations of one sigma-factor fractal (:mod:`.onepfrac`);
* ``fractaldb``: FractalDB-k, k random IFS categories, instances by parameter weighting,
  patches and flips (:mod:`.fractaldb`, with its category search and cache);
* ``ofdb``: OFDB-k, one fixed image per FractalDB category (:mod:`.ofdb`);
* ``real_image``: one real image (Canny edges, gray or RGB) and L warps of it
  (:mod:`.real_image`);
* ``radial_contour`` (RCDB) and ``visual_atom`` (VisualAtom): classes of noisy closed
  orbits drawn as polylines (:mod:`.contours`);
* ``dead_leaves``: k fixed dead-leaves images, one class each (:mod:`.dead_leaves`).

Add a source by writing a module with ``make(config, cache_dir) -> Source`` and listing it
in ``SOURCES``; its ``draw(arrays, labels, key)`` reads every array (and anything derived
from the seed) from ``arrays`` and closes over none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from fractaljax import keys as keys_lib
from fractaljax.errors import ConfigError
from fractaljax.sources.base import (
    CLASS_CHUNK,
    Source,
    bank_images,
    check_range,
    fixed_image_keys,
    render_bank,
    render_fixed,
    render_spec,
    spec_identity,
)
from fractaljax.sources.contours import make_contours
from fractaljax.sources.dead_leaves import make_dead_leaves
from fractaljax.sources.fractaldb import make_fractaldb, search_categories, search_spec
from fractaljax.sources.ofdb import make_ofdb
from fractaljax.sources.onepfrac import (
    DATA_MODES,
    OnePFracSource,
    make_onepfrac,
    onepfrac_keys,
    onepfrac_systems,
    perturb_filled,
)
from fractaljax.sources.real_image import make_real_image

__all__ = [
    "CLASS_CHUNK", "DATA_MODES", "LABEL_MODES", "SOURCES", "OnePFracSource", "Source",
    "bank_images", "check_range", "class_grid_labels", "fixed_image_keys", "make",
    "make_contours", "make_dead_leaves", "make_fractaldb", "make_ofdb", "make_onepfrac",
    "make_real_image", "onepfrac_keys", "onepfrac_systems", "perturb_filled", "render_bank",
    "render_fixed", "render_spec", "search_categories", "search_spec", "spec_identity",
]  # fmt: skip

SOURCES: dict[str, Callable[[ml_collections.ConfigDict, str | None], Source]] = {
    "onepfrac": make_onepfrac,
    "fractaldb": make_fractaldb,
    "ofdb": make_ofdb,
    "real_image": make_real_image,
    "radial_contour": make_contours,
    "visual_atom": make_contours,
    "dead_leaves": make_dead_leaves,
}


# The sources with a continuous latent (``latent_batch``: the images of drawn multipliers u),
# which model.head='mdn' learns to invert; named so a config is checked before it is built.
LATENT_SOURCES = ("onepfrac",)

# 'true': the source's labels; 'random': the drift control (see Source.random_labels).
LABEL_MODES = ("true", "random")


def make(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """Build the source named by ``config.source.name`` (with ``source.labels='random'``,
    its drift control: the same images under labels drawn independently of them).

    ``cache_dir`` (the run's workdir) keeps results of one-time searches (FractalDB's
    categories) across runs.
    """
    keys_lib.check_seed(config.seed)
    name = config.source.name
    if name not in SOURCES:
        raise ConfigError(f"source.name={name!r}: unknown; choose one of {sorted(SOURCES)}")
    labels = config.source.get("labels", "true")
    if labels not in LABEL_MODES:
        raise ConfigError(
            f"source.labels={labels!r}: must be one of {LABEL_MODES} ('random': the drift "
            "control, labels independent of the images)"
        )
    try:
        source = SOURCES[name](config, cache_dir)
    except (AttributeError, KeyError) as e:
        # A missing config field: ml_collections raises KeyError, or AttributeError(KeyError)
        # for attribute access. Any other AttributeError is a bug and keeps its traceback.
        if isinstance(e, AttributeError) and not (e.args and isinstance(e.args[0], KeyError)):
            raise
        raise ConfigError(
            f"source.name={name!r}: config.source lacks a field ({e}); start from configs/{name}.py"
        ) from None
    return dataclasses.replace(source, random_labels=labels == "random")


def class_grid_labels(num_classes: int, num: int) -> jax.Array:
    """``num`` class indices spread evenly over ``[0, num_classes)`` (for pictures)."""
    num = min(num, num_classes)
    return jnp.round(jnp.linspace(0, num_classes - 1, num)).astype(jnp.int32)
