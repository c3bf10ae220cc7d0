"""FractalDB-k (Kataoka et al., ACCV 2020): k random IFS categories found by the official
fill-rate search (cached beside the run), instances by parameter weighting, patches, flips."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import ifs as ifs_lib
from fractaljax import keys as keys_lib
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.ifs import IFS
from fractaljax.sources.base import Source, check_range, gray_drawing, render_spec, spec_identity

# Candidates tested per batch in the FractalDB category search. Part of the definition of
# the categories (candidate i's fill test uses the walk of its batch): do not change it.
_SEARCH_BATCH = 256


def _uniform_candidate(key: jax.Array, min_maps: int, max_maps: int) -> IFS:
    k_n, k_maps = jax.random.split(key)
    n = jax.random.randint(k_n, (), min_maps, max_maps + 1)
    return ifs_lib.sample_uniform(k_maps, n, max_maps)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _test_candidates(key, batch_index, check, min_maps, max_maps):
    """Candidates ``batch_index * B + [0, B)`` of the search and their fill rates."""
    cand_key, walk_key = jax.random.split(key)
    ids = batch_index * _SEARCH_BATCH + jnp.arange(_SEARCH_BATCH)
    draw = lambda i: _uniform_candidate(jax.random.fold_in(cand_key, i), min_maps, max_maps)
    cands = jax.vmap(draw)(ids)
    # The fill rate of a random IFS depends on its walk (a few far points can shrink the
    # rest when the canvas is rescaled): keep only systems that pass on two walks.
    walks = jax.random.split(jax.random.fold_in(walk_key, batch_index))
    fills = [render_lib.render_with_fill(check, cands, w)[1] for w in walks]
    return cands, jnp.minimum(*fills)


def search_spec(config: ml_collections.ConfigDict) -> render_lib.RenderSpec:
    """The rendering of FractalDB's fill test: the official search draws 100k points on a
    ``source.search_size`` (512) px canvas with pad ``source.search_pad`` (6), one pixel a
    point, whatever the training canvas: the fill rate depends on all three. The points are
    ``source.search_walkers`` (1000) walks of ``source.search_steps`` (100) steps, optional
    fields: the official 100k unless a config sets fewer (the tests, on 64 px canvases
    that 100k points saturate, to keep the search seconds short)."""
    src = config.source
    check_range(src, "search_size", lo=16, hi=4096)
    default = render_lib.RenderSpec()
    return render_lib.RenderSpec(
        image_size=src.search_size,
        walkers=int(src.get("search_walkers", default.walkers)),
        steps=int(src.get("search_steps", default.steps)),
        pad=src.search_pad,
        patch="none",
        channels=1,
        walk_start=config.render.get("walk_start", "attractor"),
    ).validate("source.search")


def search_categories(
    config: ml_collections.ConfigDict, cache_dir: str | None = None
) -> tuple[IFS, np.ndarray]:
    """FractalDB's category search: the first k random IFS whose fill rate >= min_fill.

    Candidate i is drawn from ``fold_in(split(stream(seed, 'fractaldb'))[0], i)``:
    N ~ U{min_maps..max_maps} maps with all parameters ~ U(-1, 1) (padded to ``max_maps``
    with zero-probability maps).
    Its fill rate is the smaller of those of two point renderings at :func:`search_spec`
    (two walks). The result depends only on the config; with a ``cache_dir`` it is saved
    there as ``ifs_categories_<hash>.npz`` and read back on the next call.

    Returns:
      ``(systems, fills)``: ``maps: float32[k, max_maps, 6]``, and ``float32[k]``.
    """
    src = config.source
    check_range(src, "num_classes", lo=1)
    check_range(src, "min_maps", lo=1, hi=src.max_maps)
    check_range(src, "max_maps", lo=src.min_maps, hi=64)
    check_range(src, "min_fill", lo=0.0, hi=0.99)
    check = search_spec(config)
    what = dict(
        seed=config.seed, k=src.num_classes, min_maps=src.min_maps, max_maps=src.max_maps,
        min_fill=src.min_fill, render=spec_identity(check), batch=_SEARCH_BATCH, v=4,
    )  # fmt: skip
    digest = hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir and os.path.join(cache_dir, f"ifs_categories_{digest}.npz")
    if path and os.path.exists(path):
        try:
            with np.load(path) as f:
                return IFS(jnp.asarray(f["maps"]), jnp.asarray(f["probs"])), f["fills"]
        except (OSError, ValueError, KeyError):
            print(f"{path}: unreadable cache, searching the categories again", flush=True)

    key = keys_lib.stream(config.seed, "fractaldb")
    t0 = time.perf_counter()
    kept_maps, kept_probs, kept_fills, tried = [], [], [], 0
    max_batches = max(4, 100 * src.num_classes // _SEARCH_BATCH)  # 100 candidates a category
    for b in range(max_batches):
        cands, fill = jax.device_get(_test_candidates(key, b, check, src.min_maps, src.max_maps))
        ok = fill >= src.min_fill
        kept_maps.append(cands.maps[ok])
        kept_probs.append(cands.probs[ok])
        kept_fills.append(fill[ok])
        tried += _SEARCH_BATCH
        if sum(len(f) for f in kept_fills) >= src.num_classes:
            break
    fills = np.concatenate(kept_fills)[: src.num_classes]
    if len(fills) < src.num_classes:
        raise ConfigError(
            f"source.min_fill={src.min_fill}: only {len(fills)} of {tried} random systems "
            f"passed at {check.image_size} px; lower source.min_fill or source.num_classes"
        )
    maps = np.concatenate(kept_maps)[: src.num_classes]
    probs = np.concatenate(kept_probs)[: src.num_classes]
    print(
        f"category search: {src.num_classes} systems with fill >= {src.min_fill} from "
        f"{tried} candidates in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        # Written whole, then renamed: never a half-written cache (one name per process: all
        # processes of a multi-process run search and may write at once).
        tmp = f"{path}.tmp{jax.process_index()}.npz"
        np.savez(tmp, maps=maps, probs=probs, fills=fills)
        os.replace(tmp, path)
    return IFS(jnp.asarray(maps), jnp.asarray(probs)), fills


def make_fractaldb(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """FractalDB-k (Kataoka et al., ACCV 2020): k random IFS categories.

    Categories come from :func:`search_categories`. An instance of a category is drawn on
    the fly, as FractalDB's intra-category variation: one of 1 + 6 x len(weights)
    parameter weightings (none, or one of the six parameters a..f of every map multiplied
    by a weight, e.g. 0.8, 0.9, 1.1, 1.2), a fresh random 3x3 patch pattern (``render.patch``)
    and, with ``source.flip``, a random horizontal and vertical flip.
    """
    src = config.source
    spec = render_spec(config)
    weights = jnp.asarray(tuple(src.weights), jnp.float32)
    if weights.ndim != 1 or weights.size == 0 or not bool(jnp.all(weights > 0)):
        raise ConfigError(f"source.weights={src.weights}: must be a list of positive numbers")
    systems, _ = search_categories(config, cache_dir)
    nw = weights.shape[0]

    def draw(arrays, labels, key):
        classes, weights = arrays["systems"], arrays["weights"]
        valid = classes.probs > 0
        k_w, k_flip, k_render = jax.random.split(key, 3)
        b = labels.shape[0]
        pick = jax.random.randint(k_w, (b,), 0, 1 + 6 * nw)  # 0: the category as drawn
        param, weight = (pick - 1) // nw, weights[(pick - 1) % nw]
        scale = jnp.where(
            (pick[:, None] > 0) & (jnp.arange(6) == param[:, None]), weight[:, None], 1.0
        )
        maps = classes.maps[labels] * scale[:, None, :]  # [B, N, 6]
        images = render_lib.render(
            spec, IFS(maps, ifs_lib.map_probs(maps, valid[labels])), k_render
        )
        if src.flip:
            fh, fv = jax.random.bernoulli(k_flip, 0.5, (2, b, 1, 1, 1))
            images = jnp.where(fh, images[:, :, ::-1], images)
            images = jnp.where(fv, images[:, ::-1], images)
        return images

    arrays = {"systems": systems, "weights": weights}
    gray = gray_drawing(spec)
    return Source("fractaldb", src.num_classes, spec, draw, systems, arrays=arrays, gray=gray)
