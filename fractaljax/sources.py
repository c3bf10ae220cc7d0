"""Synthetic data sources: pure functions ``(key, step) -> (images, labels)``.

A :class:`Source` holds everything that is fixed for a run (for 1p-frac: the table of L
perturbed systems, computed once from the seed) and renders batches on device, so a
pre-training step can call ``source.batch(key, step, batch_size)`` inside ``jit``. The
stream is a pure function of (key, step): a resumed run sees the batches it would have seen.

Sources (``config.source.name``):

* ``onepfrac``: 1p-frac, L perturbations of one sigma-factor fractal;
* ``fractaldb``: FractalDB-k, k random IFS categories, instances by parameter weighting,
  patches and flips;
* ``ofdb``: OFDB-k, one fixed image per FractalDB category;
* ``real_image``: one real image (Canny edges, gray or RGB) and L warps of it.

Add a source by writing a ``make_<name>(config, cache_dir) -> Source`` and listing it in
``SOURCES``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import ifs as ifs_lib
from fractaljax import keys as keys_lib
from fractaljax import real_image
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.ifs import IFS


@dataclasses.dataclass(frozen=True)
class Source:
    """A synthetic labelled image source.

    Attributes:
      name: source name as in the config.
      num_classes: number of labels.
      spec: the rendering options.
      render_labels: ``(labels int32[B], key) -> float32[B, H, W, C]``; jit-able.
      systems: the per-class systems (``maps: float32[L, N, 6]``) where the source has them.
      info: facts about how the source was built (1p-frac: class redraw counts).
      base: 1p-frac's unperturbed system (``maps: float32[N, 6]``), whose perturbations the
        classes are; None for the other sources.
      random_labels: the drift control (``source.labels='random'``): every example's label is
        drawn uniformly and independently of its image, so the images carry no information
        about the labels and pre-training learns nothing but still takes its optimiser steps.
    """

    name: str
    num_classes: int
    spec: render_lib.RenderSpec
    render_labels: Callable[[jax.Array, jax.Array], jax.Array]
    systems: IFS | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    base: IFS | None = None
    random_labels: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images :meth:`batch` returns."""
        return (self.spec.image_size, self.spec.image_size, self.spec.channels)

    def batch(self, key: jax.Array, step: jax.Array | int, batch_size: int):
        """One batch: labels uniform over the classes, freshly rendered.

        Returns ``(images float32[B, H, W, C], labels int32[B])``; a pure function of
        (key, step), jit-able (``batch_size`` static).
        """
        k_label, k_render = jax.random.split(jax.random.fold_in(key, step))
        labels = jax.random.randint(k_label, (batch_size,), 0, self.num_classes)
        images = self.render_labels(labels, k_render)
        if self.random_labels:  # the same images, labels that say nothing about them
            k_noise = jax.random.fold_in(k_label, 1)
            labels = jax.random.randint(k_noise, (batch_size,), 0, self.num_classes)
        return images, labels


def _spec_identity(spec: render_lib.RenderSpec) -> dict[str, Any]:
    """The fields of ``spec`` that decide its images (not how they are computed)."""
    fields = dataclasses.asdict(spec)
    del fields["rasterizer"]
    return fields


def render_spec(config: ml_collections.ConfigDict) -> render_lib.RenderSpec:
    """``config.render`` as a validated :class:`RenderSpec`."""
    fields = {f.name for f in dataclasses.fields(render_lib.RenderSpec)}
    given = dict(config.render)
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(f"render.{unknown[0]}: unknown field; known: {', '.join(sorted(fields))}")
    return render_lib.RenderSpec(**given).validate()


def _check_range(cfg, name: str, lo=None, hi=None, prefix: str = "source") -> None:
    v = cfg[name]
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):  # v != v: NaN
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{prefix}.{name}={v}: must be in {rng}")


# Classes tested per call in the rejection loop: one compiled shape for any L >= 64.
_CLASS_CHUNK = 64
DATA_MODES = ("fixed", "stream")


def onepfrac_keys(seed: int) -> dict[str, jax.Array]:
    """The keys of a 1p-frac data set: ``base``, ``classes``, ``walk`` (the fixed walk) and
    ``patches`` (class l's patches: ``fold_in(patches, l)``)."""
    names = ("base", "classes", "walk", "patches")
    keys = jax.random.split(keys_lib.stream(seed, "onepfrac"), 4)
    return dict(zip(names, keys))


def fixed_image_keys(patch_key: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-class image keys of the fixed data set: class l's patches depend on l alone."""
    return jax.vmap(lambda lab: jax.random.fold_in(patch_key, lab))(labels)


def render_fixed(
    spec: render_lib.RenderSpec,
    systems: IFS,
    labels: jax.Array,
    walk_key: jax.Array,
    patch_key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The fixed images of classes ``labels`` and their fill rates: one walk for every class
    (``walk_key``, as the official fixed seed) and class-keyed patches, so class l's image
    is a pure function of l. The one drawing that the class rejection tests and that
    training (or a bank) uses.

    Args:
      systems: the systems of these classes, ``maps: float32[B, N, 6]``.
      labels: their class indices ``int32[B]``, which key the patches.

    Returns:
      ``(images float32[B, H, W, C], fill float32[B])``.
    """
    return render_lib.render_with_fill(spec, systems, walk_key, fixed_image_keys(patch_key, labels))


@functools.partial(jax.jit, static_argnums=(7, 8, 9))
def _class_candidates(key, base, ids, attempt, delta, walk_key, patch_key, spec, keep, steps):
    """Attempt ``attempt`` of classes ``ids`` and their fill rates (-1: diverged). Module
    level, so that every source of the same shapes reuses one compilation."""
    draw = lambda i: ifs_lib.perturb_one(
        jax.random.fold_in(jax.random.fold_in(key, i), attempt), base, delta, keep
    )
    systems = jax.vmap(draw)(ids)
    _, fill = render_fixed(spec, systems, ids, walk_key, patch_key)  # as training draws them
    if steps:
        u = jax.random.uniform(jax.random.fold_in(walk_key, 1), (steps,))
        fill = jnp.where(render_lib.diverges(systems, u), -1.0, fill)
    return systems, fill


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _filled_base(key, n_maps, sigma, min_fill, spec, max_tries):
    sampler = lambda k: ifs_lib.sample_sigma_factor(k, n_maps, sigma)
    return render_lib.sample_filled(key, sampler, spec, min_fill, max_tries)


def perturb_filled(
    key: jax.Array,
    base: IFS,
    num: int,
    delta: float,
    spec: render_lib.RenderSpec,
    walk_key: jax.Array,
    patch_key: jax.Array,
    min_fill: float,
    max_tries: int,
    keep_probs: bool = True,
    diverge_steps: int = 100_000,
) -> tuple[IFS, np.ndarray, np.ndarray]:
    """The L classes of 1p-frac with the official per-class rejection.

    Class l, attempt a, is ``ifs.perturb_one(fold_in(fold_in(key, l), a), base, delta)``; it
    is kept when its fixed image (walk ``walk_key``, patches ``fold_in(patch_key, l)``, as
    the fixed data set draws it) fills more than ``min_fill`` of the canvas and a sequential
    walk of ``diverge_steps`` steps from the origin (the official walk's length; 0: skip)
    stays within ``render.DIVERGED_RADIUS``; otherwise attempt a + 1 is drawn, at most
    ``max_tries`` attempts. The official generator loops ``while 1`` over fresh
    perturbations with the fill test (> 0.05 of the 512 px patched image), in which a
    diverging 100k-step walk collapses to a few pixels; the parallel renderer's short
    walkers can miss a slow divergence, hence the explicit probe. Classes still failing are
    tested again in jit-compiled chunks of ``_CLASS_CHUNK``, so the work is about
    L x (1 + redraw rate) renders.

    Returns:
      ``(systems, redraws, fills)``: ``maps: float32[L, N, 6]``, the number of rejected
      attempts per class ``int[L]``, and the kept images' fill rates ``float32[L]``.

    Raises:
      ConfigError: a class found no passing perturbation in ``max_tries`` attempts.
    """
    check = dataclasses.replace(spec, color=False, background="black")
    candidates = lambda ids, attempt: _class_candidates(
        key, base, ids, attempt, delta, walk_key, patch_key, check, keep_probs, diverge_steps
    )

    n_maps = base.maps.shape[0]
    maps = np.zeros((num, n_maps, 6), np.float32)
    probs = np.zeros((num, n_maps), np.float32)
    fills = np.zeros(num, np.float32)
    redraws = np.zeros(num, np.int64)
    pending = np.arange(num)
    chunk = min(_CLASS_CHUNK, num)
    for attempt in range(max_tries):
        passed = []
        for i in range(0, len(pending), chunk):
            ids = pending[i : i + chunk]
            padded = np.resize(ids, chunk)  # repeats ids to the compiled shape
            systems, fill = jax.device_get(candidates(jnp.asarray(padded, jnp.int32), attempt))
            n = len(ids)
            maps[ids], probs[ids], fills[ids] = systems.maps[:n], systems.probs[:n], fill[:n]
            passed.append(fill[:n] > min_fill)
        pending = pending[~np.concatenate(passed)]
        if not len(pending):
            break
        redraws[pending] += 1
    if len(pending):
        raise ConfigError(
            f"source.min_fill={min_fill}: {len(pending)} of {num} classes found no perturbation "
            f"filling more than that in source.class_max_tries={max_tries} draws (delta "
            f"{delta}); lower source.min_fill or source.delta, or raise source.class_max_tries"
        )
    return IFS(jnp.asarray(maps), jnp.asarray(probs)), redraws, fills


def onepfrac_systems(
    config: ml_collections.ConfigDict, spec: render_lib.RenderSpec
) -> tuple[IFS, dict[str, Any]]:
    """The L class systems of 1p-frac: one sigma-factor base fractal, L LIEP perturbations.

    The base is drawn from ``config.seed`` and redrawn (at most ``source.max_tries`` times)
    until its drawing at ``spec`` fills more than ``source.min_fill`` of the canvas (the
    official generator draws it once and relies on the class loop; a base that almost never
    passes would make that loop endless). Then every class is drawn with the official
    per-class rejection (:func:`perturb_filled`).

    Returns:
      ``(systems, info, base)``: ``maps: float32[L, N, 6]``, ``info`` with ``redraws``
      (total rejected perturbations), ``classes_redrawn`` and ``min_class_fill``, and the
      base system (``maps: float32[N, 6]``).
    """
    src = config.source
    keys = onepfrac_keys(config.seed)
    base, _, ok = _filled_base(
        keys["base"], src.n_maps, src.sigma, src.min_fill, spec, src.max_tries
    )
    if not bool(ok):
        raise ConfigError(
            f"source.min_fill={src.min_fill}: no base fractal passed it in {src.max_tries} "
            f"draws (seed {config.seed}); lower source.min_fill or raise source.max_tries"
        )
    systems, redraws, fills = perturb_filled(
        keys["classes"],
        base,
        src.num_classes,
        src.delta,
        spec,
        keys["walk"],
        keys["patches"],
        src.min_fill,
        src.class_max_tries,
        keep_probs=not src.recompute_probs,
        diverge_steps=src.diverge_steps,
    )
    info = dict(
        redraws=int(redraws.sum()),
        classes_redrawn=int((redraws > 0).sum()),
        min_class_fill=float(fills.min()),
    )
    return systems, info, base


def make_onepfrac(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """1p-frac (Nakamura et al., ECCV 2024): L classes = L perturbations of one fractal.

    ``source.data='fixed'`` (default, official): the data set is L images, class l's image a
    pure function of l (one walk shared by all classes, as the official fixed seed, and
    class-keyed patches), rendered in the step, or read from a device-resident ``uint8``
    bank of the L images with ``source.bank=True`` (the same images); ``'stream'``: every
    batch draws a fresh walk and fresh patches (an unbounded data set).
    """
    src = config.source
    _check_range(src, "num_classes", lo=1)
    _check_range(src, "n_maps", lo=1, hi=64)
    _check_range(src, "delta", lo=0.0, hi=1.0)
    _check_range(src, "min_fill", lo=0.0, hi=0.99)
    _check_range(src, "max_tries", lo=1)
    _check_range(src, "class_max_tries", lo=1)
    _check_range(src, "diverge_steps", lo=0)
    if src.data not in DATA_MODES:
        raise ConfigError(f"source.data={src.data!r}: must be one of {DATA_MODES}")
    if src.bank and src.data != "fixed":
        raise ConfigError("source.bank=True needs source.data='fixed' (a bank holds L images)")
    ifs_lib.check_sigma(src.sigma, src.n_maps)
    spec = render_spec(config)
    systems, info, base = onepfrac_systems(config, spec)
    del cache_dir  # drawing the L systems took 10-22 s for L = 1000 at 512 px on 2 CPU cores
    keys = onepfrac_keys(config.seed)

    def fixed_images(labels):
        chosen = jax.tree.map(lambda a: a[labels], systems)
        return render_fixed(spec, chosen, labels, keys["walk"], keys["patches"])[0]

    if src.data == "stream":

        def render_labels(labels, key):
            return render_lib.render(spec, jax.tree.map(lambda a: a[labels], systems), key)

    elif src.bank:
        bank = render_bank(fixed_images, src.num_classes, spec)

        def render_labels(labels, key):
            del key  # the fixed data set
            return bank_images(bank, labels, spec.channels)

    else:

        def render_labels(labels, key):
            del key  # the fixed data set
            return fixed_images(labels)

    return Source("onepfrac", src.num_classes, spec, render_labels, systems, info, base)


def render_bank(
    draw: Callable[[jax.Array], jax.Array], num: int, spec: render_lib.RenderSpec
) -> jax.Array:
    """``draw(labels) -> float32[B, H, W, C]`` for every label, as ``uint8[num, H, W, C']``
    on the device (C' = 1 for gray images: a 1000-image bank at 512 px is 262 MB)."""
    gray = not spec.color and spec.background == "black"
    to_u8 = lambda im: jnp.round((im[..., :1] if gray else im) * 255).astype(jnp.uint8)
    draw_u8 = jax.jit(lambda labels: to_u8(draw(labels)))
    chunk = min(_CLASS_CHUNK, num)
    parts = []
    for i in range(0, num, chunk):
        ids = np.resize(np.arange(i, min(i + chunk, num)), chunk)
        parts.append(draw_u8(jnp.asarray(ids, jnp.int32))[: min(chunk, num - i)])
    return jnp.concatenate(parts)


# uint8 -> float32 by table: XLA turns a division by 255 into a multiplication by its
# reciprocal, one ulp off the renderer's gray level 127/255.
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)


def bank_images(bank: jax.Array, labels: jax.Array, channels: int) -> jax.Array:
    """``float32[B, H, W, channels]`` from a :func:`render_bank` bank: bit-identical to the
    rendered images for gray fractals on black whose gray level is k/255 (the official
    127/255); other levels and colours are rounded to 8 bits (as the official PNGs)."""
    im = jnp.asarray(_LEVELS)[bank[labels]]
    return jnp.broadcast_to(im, im.shape[:3] + (channels,))


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
    point, whatever the training canvas: the fill rate depends on all three."""
    src = config.source
    _check_range(src, "search_size", lo=16, hi=4096)
    return render_lib.RenderSpec(
        image_size=src.search_size,
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
    _check_range(src, "num_classes", lo=1)
    _check_range(src, "min_maps", lo=1, hi=src.max_maps)
    _check_range(src, "max_maps", lo=src.min_maps, hi=64)
    _check_range(src, "min_fill", lo=0.0, hi=0.99)
    check = search_spec(config)
    what = dict(
        seed=config.seed, k=src.num_classes, min_maps=src.min_maps, max_maps=src.max_maps,
        min_fill=src.min_fill, render=_spec_identity(check), batch=_SEARCH_BATCH, v=4,
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
    valid = systems.probs > 0

    def render_labels(labels, key):
        k_w, k_flip, k_render = jax.random.split(key, 3)
        b = labels.shape[0]
        pick = jax.random.randint(k_w, (b,), 0, 1 + 6 * nw)  # 0: the category as drawn
        param, weight = (pick - 1) // nw, weights[(pick - 1) % nw]
        scale = jnp.where(
            (pick[:, None] > 0) & (jnp.arange(6) == param[:, None]), weight[:, None], 1.0
        )
        maps = systems.maps[labels] * scale[:, None, :]  # [B, N, 6]
        images = render_lib.render(
            spec, IFS(maps, ifs_lib.map_probs(maps, valid[labels])), k_render
        )
        if src.flip:
            fh, fv = jax.random.bernoulli(k_flip, 0.5, (2, b, 1, 1, 1))
            images = jnp.where(fh, images[:, :, ::-1], images)
            images = jnp.where(fv, images[:, ::-1], images)
        return images

    return Source("fractaldb", src.num_classes, spec, render_labels, systems)


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
    draw = lambda labels: render_fixed(
        spec, jax.tree.map(lambda a: a[labels], systems), labels, key, key
    )[0]
    bank = render_bank(draw, src.num_classes, spec)

    def render_labels(labels, key):
        del key  # one fixed image per category
        return bank_images(bank, labels, spec.channels)

    return Source("ofdb", src.num_classes, spec, render_labels, systems)


def make_real_image(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """One real image, L classes = L random warps of it (1p-frac's single-real-image study).

    ``source.image_path`` (default: scikit-learn's bundled ``china.jpg``) is cropped to its
    centred square, turned into Canny edges (``source.mode='edges'``, the paper's best), a
    gray or an RGB image, and class l is warp l (``source.perturbation``: 'affine',
    'polynomial' or 'elastic', parameters ~ U(-delta, delta) in canvas units where the
    canvas spans [-1, 1]). Rendering is one bilinear resampling per image, on device.
    """
    del cache_dir
    src = config.source
    spec = render_spec(config)
    _check_range(src, "num_classes", lo=1)
    _check_range(src, "delta", lo=0.0, hi=1.0)
    _check_range(src, "edge_sigma", lo=0.1, hi=20.0)
    _check_range(src, "elastic_grid", lo=2, hi=64)
    if not 0.0 <= src.edge_low <= src.edge_high <= 1.0:
        raise ConfigError(
            f"source.edge_low={src.edge_low}, source.edge_high={src.edge_high}: need "
            "0 <= edge_low <= edge_high <= 1"
        )
    if src.mode == "rgb" and spec.channels != 3:
        raise ConfigError("source.mode='rgb' needs render.channels=3")
    # Edges are found at >= 256 px, where Canny's scale is meaningful, then downsampled.
    work = max(spec.image_size, src.edge_resolution)
    rgb = real_image.load_image(src.image_path, work)
    base = real_image.base_image(
        rgb, src.mode, spec.image_size, src.edge_sigma, src.edge_low, src.edge_high
    )
    if src.mode == "edges":
        base = base * spec.gray_level
    base = jnp.broadcast_to(base, base.shape[:2] + (spec.channels,))
    warps = real_image.sample_warps(
        keys_lib.stream(config.seed, "real_image"),
        src.num_classes,
        src.perturbation,
        src.delta,
        src.elastic_grid,
    )

    def render_labels(labels, key):
        one = lambda p: real_image.warp(base, src.perturbation, p, src.elastic_grid)
        images = jax.vmap(one)(warps[labels])
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(labels.shape[0]))
        return render_lib.add_background(spec, images, images.max(-1) > 0, keys)

    return Source("real_image", src.num_classes, spec, render_labels)


SOURCES: dict[str, Callable[[ml_collections.ConfigDict, str | None], Source]] = {
    "onepfrac": make_onepfrac,
    "fractaldb": make_fractaldb,
    "ofdb": make_ofdb,
    "real_image": make_real_image,
}


# 'true': the source's labels; 'random': the drift control (see Source.random_labels).
LABEL_MODES = ("true", "random")


def make(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """Build the source named by ``config.source.name`` (with ``source.labels='random'``,
    its drift control: the same images under labels drawn independently of them).

    ``cache_dir`` (the run's workdir) keeps results of one-time searches (FractalDB's
    categories) across runs.
    """
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
