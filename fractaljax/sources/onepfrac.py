"""1p-frac (Nakamura et al., ECCV 2024): L perturbations of one sigma-factor fractal, with
the official per-class rejection; the generator object that inference reads."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import ifs as ifs_lib
from fractaljax import keys as keys_lib
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.ifs import IFS
from fractaljax.sources.base import (
    CLASS_CHUNK,
    Source,
    bank_draw,
    check_range,
    gray_drawing,
    render_bank,
    render_fixed,
    render_spec,
)

DATA_MODES = ("fixed", "stream")
# The walk and patches of latent_batch: 'fixed', those of the generator that inference
# inverts (the data set's walk, the patches of class index L); 'fresh', new ones per batch.
LATENT_WALKS = ("fixed", "fresh")


@dataclasses.dataclass(frozen=True)
class OnePFracSource(Source):
    """A 1p-frac :class:`Source` and the generator behind it, for inference.

    Attributes:
      base: the unperturbed system (``maps: float32[N, 6]``) whose perturbations the
        classes (``systems``) are.
      seed: the data set's seed (its keys: :func:`onepfrac_keys`).
      delta: the perturbation half-width Delta.
    """

    base: IFS | None = None
    seed: int = 0
    delta: float = 0.0
    latent_walk: str = "fixed"

    @property
    def num_latents(self) -> int:
        """P = 6N, the multipliers of the base's parameters."""
        return int(self.base.maps.size)

    def latent_batch(self, key: jax.Array, step: jax.Array | int, batch_size: int):
        """One batch of the continuous generator, for a head that reads ``u`` back
        (``model.head='mdn'``): fresh multipliers ``u ~ U(1 - Delta, 1 + Delta)^{6N}`` of the
        base's parameters (the official LIEP law, the base's map probabilities kept), drawn
        on the walk and patches of ``source.latent_walk``: 'fixed' (default), the ones of
        the generator that :mod:`fractaljax.inference` inverts, so the head learns the joint
        that importance sampling targets; 'fresh', a new walk and new patches each batch (a
        head that averages over them). The amortized-inference training of Le et al. (2017);
        the official per-class fill rejection is not applied.

        Returns ``(images float32[B, H, W, C], u float32[B, 6N])``; a pure function of
        (key, step), jit-able (``batch_size`` static).
        """
        k_u, k_render = jax.random.split(jax.random.fold_in(key, step))
        d = self.delta
        u = jax.random.uniform(k_u, (batch_size, self.num_latents), minval=1 - d, maxval=1 + d)
        if self.latent_walk == "fixed":
            return self.render_multipliers(u), u
        probs = jnp.broadcast_to(self.base.probs, (batch_size, self.base.maps.shape[0]))
        maps = self.base.maps[None] * u.reshape(batch_size, *self.base.maps.shape)
        return render_lib.render(self.spec, IFS(maps, probs), k_render), u

    def render_multipliers(self, u: jax.Array) -> jax.Array:
        """Images of multipliers ``u: float32[K, 6N]`` on the generator's fixed walk with the
        patches of class index L (inference's renderer of the continuous latent),
        ``float32[K, H, W, C]``."""
        k = u.shape[0]
        maps = self.base.maps[None] * u.reshape(k, *self.base.maps.shape)
        probs = jnp.broadcast_to(self.base.probs, maps.shape[:2])
        keys = onepfrac_keys(self.seed)
        image_key = jax.random.fold_in(keys["patches"], self.num_classes)
        image_keys = jnp.broadcast_to(image_key, (k,) + image_key.shape)
        return render_lib.render_with_fill(self.spec, IFS(maps, probs), keys["walk"], image_keys)[0]


def onepfrac_keys(seed: int | jax.Array) -> dict[str, jax.Array]:
    """The keys of a 1p-frac data set: ``base``, ``classes``, ``walk`` (the fixed walk) and
    ``patches`` (class l's patches: ``fold_in(patches, l)``)."""
    names = ("base", "classes", "walk", "patches")
    keys = jax.random.split(keys_lib.stream(seed, "onepfrac"), 4)
    return dict(zip(names, keys))


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
    tested again in jit-compiled chunks of ``CLASS_CHUNK``, so the work is about
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
    chunk = min(CLASS_CHUNK, num)
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
    check_range(src, "num_classes", lo=1)
    check_range(src, "n_maps", lo=1, hi=64)
    check_range(src, "delta", lo=0.0, hi=1.0)
    check_range(src, "min_fill", lo=0.0, hi=0.99)
    check_range(src, "max_tries", lo=1)
    check_range(src, "class_max_tries", lo=1)
    check_range(src, "diverge_steps", lo=0)
    if src.get("latent_walk", "fixed") not in LATENT_WALKS:
        raise ConfigError(f"source.latent_walk={src.latent_walk!r}: must be one of {LATENT_WALKS}")
    if src.data not in DATA_MODES:
        raise ConfigError(f"source.data={src.data!r}: must be one of {DATA_MODES}")
    if src.bank and src.data != "fixed":
        raise ConfigError("source.bank=True needs source.data='fixed' (a bank holds L images)")
    ifs_lib.check_sigma(src.sigma, src.n_maps)
    spec = render_spec(config)
    systems, info, base = onepfrac_systems(config, spec)
    del cache_dir  # drawing the L systems took 10-22 s for L = 1000 at 512 px on 2 CPU cores
    # The data set's seed is an array too: one compiled step serves every seed.
    fixed = {"systems": systems, "seed": np.int32(config.seed)}

    def fixed_images(arrays, labels):
        keys = onepfrac_keys(arrays["seed"])
        chosen = jax.tree.map(lambda a: a[labels], arrays["systems"])
        return render_fixed(spec, chosen, labels, keys["walk"], keys["patches"])[0]

    if src.data == "stream":
        arrays = {"systems": systems}

        def draw(arrays, labels, key):
            chosen = jax.tree.map(lambda a: a[labels], arrays["systems"])
            return render_lib.render(spec, chosen, key)

    elif src.bank:
        bank = render_bank(functools.partial(fixed_images, fixed), src.num_classes, spec)
        arrays, draw = {"bank": bank}, bank_draw(spec.channels)

    else:
        arrays = fixed

        def draw(arrays, labels, key):
            del key  # the fixed data set
            return fixed_images(arrays, labels)

    return OnePFracSource(
        "onepfrac", src.num_classes, spec, draw, systems, info, arrays=arrays,
        base=base, seed=config.seed, delta=float(src.delta),
        latent_walk=src.get("latent_walk", "fixed"), gray=gray_drawing(spec),
    )  # fmt: skip
