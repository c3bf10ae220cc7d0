"""Synthetic data sources: pure functions ``(key, step) -> (images, labels)``.

A :class:`Source` holds everything that is fixed for a run (for 1p-frac: the table of L
perturbed systems, computed once from the seed) and renders batches on device, so a
pre-training step can call ``source.batch(key, step, batch_size)`` inside ``jit``. The
stream is a pure function of (key, step): a resumed run sees the batches it would have seen.

Add a source by writing a ``make_<name>(config) -> Source`` and listing it in ``SOURCES``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from fractaljax import ifs as ifs_lib
from fractaljax import render as render_lib
from fractaljax.ifs import IFS, ConfigError


@dataclasses.dataclass(frozen=True)
class Source:
    """A synthetic labelled image source.

    Attributes:
      name: source name as in the config.
      num_classes: number of labels.
      spec: the rendering options.
      render_labels: ``(labels int32[B], key) -> float32[B, H, W, C]``; jit-able.
      systems: the per-class systems (``maps: float32[L, N, 6]``) where the source has them.
    """

    name: str
    num_classes: int
    spec: render_lib.RenderSpec
    render_labels: Callable[[jax.Array, jax.Array], jax.Array]
    systems: IFS | None = None

    def batch(self, key: jax.Array, step: jax.Array | int, batch_size: int):
        """One batch: labels uniform over the classes, freshly rendered.

        Returns ``(images float32[B, H, W, C], labels int32[B])``; a pure function of
        (key, step), jit-able (``batch_size`` static).
        """
        k_label, k_render = jax.random.split(jax.random.fold_in(key, step))
        labels = jax.random.randint(k_label, (batch_size,), 0, self.num_classes)
        return self.render_labels(labels, k_render), labels


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
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{prefix}.{name}={v}: must be in {rng}")


def onepfrac_systems(config: ml_collections.ConfigDict, spec: render_lib.RenderSpec) -> IFS:
    """The L class systems of 1p-frac: one sigma-factor base fractal, L LIEP perturbations.

    The base is drawn from ``config.seed`` and redrawn (at most ``source.max_tries`` times)
    until its point rendering at ``spec`` fills more than ``source.min_fill`` of the canvas.
    """
    src = config.source
    key = jax.random.key(config.seed)
    sampler = lambda k: ifs_lib.sample_sigma_factor(k, src.n_maps, src.sigma)

    @jax.jit
    def build(key):
        base, fill, ok = render_lib.sample_filled(
            jax.random.fold_in(key, 0), sampler, spec, src.min_fill, src.max_tries
        )
        return ifs_lib.perturb(jax.random.fold_in(key, 1), base, src.num_classes, src.delta), ok

    systems, ok = build(key)
    if not bool(ok):
        raise ConfigError(
            f"source.min_fill={src.min_fill}: no base fractal passed it in {src.max_tries} "
            f"draws (seed {config.seed}); lower source.min_fill or raise source.max_tries"
        )
    return systems


def make_onepfrac(config: ml_collections.ConfigDict) -> Source:
    """1p-frac (Nakamura et al., ECCV 2024): L classes = L perturbations of one fractal."""
    src = config.source
    _check_range(src, "num_classes", lo=1)
    _check_range(src, "n_maps", lo=1, hi=64)
    _check_range(src, "delta", lo=0.0, hi=1.0)
    _check_range(src, "min_fill", lo=0.0, hi=0.99)
    _check_range(src, "max_tries", lo=1)
    ifs_lib.check_sigma(src.sigma, src.n_maps)
    spec = render_spec(config)
    systems = onepfrac_systems(config, spec)

    def render_labels(labels, key):
        return render_lib.render(spec, jax.tree.map(lambda a: a[labels], systems), key)

    return Source("onepfrac", src.num_classes, spec, render_labels, systems)


SOURCES: dict[str, Callable[[ml_collections.ConfigDict], Source]] = {
    "onepfrac": make_onepfrac,
}


def make(config: ml_collections.ConfigDict) -> Source:
    """Build the source named by ``config.source.name``."""
    name = config.source.name
    if name not in SOURCES:
        raise ConfigError(f"source.name={name!r}: unknown; choose one of {sorted(SOURCES)}")
    return SOURCES[name](config)


def class_grid_labels(num_classes: int, num: int) -> jax.Array:
    """``num`` class indices spread evenly over ``[0, num_classes)`` (for pictures)."""
    num = min(num, num_classes)
    return jnp.round(jnp.linspace(0, num_classes - 1, num)).astype(jnp.int32)
