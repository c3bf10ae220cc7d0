"""OFDB-k (Nakamura et al., ICCV 2023): one fixed image per FractalDB category."""

from __future__ import annotations

import jax
import ml_collections

from fractaljax import keys as keys_lib
from fractaljax.sources.base import (
    Source,
    bank_draw,
    gray_drawing,
    render_bank,
    render_fixed,
    render_spec,
)
from fractaljax.sources.fractaldb import search_categories


def make_ofdb(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """OFDB-k (Nakamura et al., ICCV 2023): one fixed image per category.

    The k categories are FractalDB's (:func:`search_categories`); each is rendered once,
    with one fixed walk and patch pattern, and kept on device as ``uint8[k, H, W, C]``. The
    same image is returned for a label at every step: augmentation supplies the variation.
    """
    src = config.source
    spec = render_spec(config)
    systems, _ = search_categories(config, cache_dir)
    key = keys_lib.stream(config.seed, "ofdb")
    # One fixed walk (key) and class-keyed patches: each category's image is drawn once.
    render_one = lambda labels: render_fixed(
        spec, jax.tree.map(lambda a: a[labels], systems), labels, key, key
    )[0]
    arrays = {"bank": render_bank(render_one, src.num_classes, spec)}
    draw = bank_draw(spec.channels)
    gray = gray_drawing(spec)
    return Source("ofdb", src.num_classes, spec, draw, systems, arrays=arrays, gray=gray)
