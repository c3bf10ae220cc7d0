"""Iterated function systems (IFS) as arrays: sampling and LIEP perturbation.

An IFS is N affine maps w_i(x) = A_i x + t_i of the plane, drawn with probabilities p_i.
Here a system is an :class:`IFS` of two arrays:

* ``maps``  ``float32[..., N, 6]``: per map ``(a, b, c, d, e, f)`` with
  ``A = [[a, b], [c, d]]`` and ``t = (e, f)``;
* ``probs`` ``float32[..., N]``: map probabilities, summing to 1. Padding maps (used when
  systems of different N share one array, as in FractalDB) have probability 0 and are never
  drawn.

Every sampler is a pure function of a PRNG key, so it can be ``jit``-ed and ``vmap``-ed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fractaljax.errors import ConfigError

# Half-width of the window that the sigma-factor target a is drawn from (Anderson & Farrell).
SIGMA_HALF_WIDTH = 0.1


class IFS(NamedTuple):
    """A (batch of) iterated function system(s); see the module docstring for the layout."""

    maps: jax.Array  # float32[..., N, 6]
    probs: jax.Array  # float32[..., N]

    @property
    def num_maps(self) -> int:
        return self.maps.shape[-2]


def det(maps: jax.Array) -> jax.Array:
    """Determinants of the linear parts, ``float32[..., N, 6] -> float32[..., N]``."""
    a, b, c, d = maps[..., 0], maps[..., 1], maps[..., 2], maps[..., 3]
    return a * d - b * c


def map_probs(maps: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Map probabilities proportional to |det A_i| (the FractalDB / 1p-frac convention).

    Args:
      maps: ``float32[..., N, 6]``.
      valid: optional ``bool[..., N]``; invalid (padding) maps get probability 0.

    Returns:
      ``float32[..., N]`` summing to 1. Where every |det| is 0 or not finite (degenerate
      systems), the valid maps are drawn uniformly instead, so the result is never NaN.
    """
    w = jnp.abs(det(maps))
    w = jnp.where(jnp.isfinite(w), w, 0.0)
    if valid is None:
        valid = jnp.ones(w.shape, bool)
    w = jnp.where(valid, w, 0.0)
    total = w.sum(-1, keepdims=True)
    uniform = valid / jnp.maximum(valid.sum(-1, keepdims=True), 1)
    # Dividing by a huge finite total can still underflow to all zeros; fall back then too.
    p = w / jnp.where(total > 0, total, 1.0)
    ok = (total > 0) & jnp.isfinite(total) & (p.sum(-1, keepdims=True) > 0.5)
    return jnp.where(ok, p, uniform).astype(jnp.float32)


def check_sigma(sigma: float, n_maps: int, field: str = "source.sigma") -> None:
    """Raise :class:`ConfigError` unless the sigma-factor sampler can satisfy ``sigma``.

    The target a ~ U(sigma - 0.1, sigma + 0.1) must be positive, and at most 3N (each map
    contributes s1 + 2 s2 <= 3 with singular values in [0, 1]); the sampler clips a to 3N, so
    sigma = 3N (the paper's sigma = 6.0 with N = 2) draws near-isometric maps.
    """
    if n_maps < 1:
        raise ConfigError(f"source.n_maps={n_maps}: must be >= 1")
    lo, hi = SIGMA_HALF_WIDTH, 3 * n_maps
    if not lo < sigma <= hi:
        raise ConfigError(
            f"{field}={sigma}: with n_maps={n_maps} it must be in ({lo:g}, {hi:g}] "
            f"(sum of s1 + 2 s2 over {n_maps} maps with singular values <= 1)"
        )


def _rotation(theta: jax.Array) -> jax.Array:
    """``float32[...] -> float32[..., 2, 2]``."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)


def sample_singular_values(key: jax.Array, a: jax.Array, n_maps: int) -> jax.Array:
    """Singular values ``float32[N, 2]`` with 0 <= s2 <= s1 <= 1 and sum(s1 + 2 s2) = a.

    Anderson & Farrell (2022), "Improving fractal pre-training": maps are filled in turn,
    each s drawn uniformly within the bounds that keep the remaining maps feasible. Requires
    0 < a <= 3 N (see :func:`check_sigma`).
    """
    k_maps, k_last = jax.random.split(key)

    def one_map(bounds, k):
        lo, hi = bounds  # feasible range of the remaining weighted sum, less one full map
        k1, k2 = jax.random.split(k)
        s1 = jax.random.uniform(k1, minval=jnp.maximum(0.0, lo / 3), maxval=jnp.minimum(1.0, hi))
        lo, hi = lo - s1, hi - s1
        s2 = jax.random.uniform(k2, minval=jnp.maximum(0.0, lo / 2), maxval=jnp.minimum(s1, hi / 2))
        return (lo - 2 * s2 + 3, hi - 2 * s2), jnp.stack([s1, s2])

    init = (a - 3 * n_maps + 3.0, a)
    (_, hi), svs = jax.lax.scan(one_map, init, jax.random.split(k_maps, n_maps - 1))
    # The last map takes exactly what is left: s1 + 2 s2 = hi, with s2 <= s1 <= 1.
    s2 = jax.random.uniform(k_last, minval=jnp.maximum(0.0, (hi - 1) / 2), maxval=hi / 3)
    last = jnp.stack([hi - 2 * s2, s2])
    return jnp.concatenate([svs.reshape(-1, 2), last[None]], 0)


def sample_sigma_factor(key: jax.Array, n_maps: int = 2, sigma: float = 3.5) -> IFS:
    """One IFS with the sigma-factor constraint (the 1p-frac base fractal).

    A target a ~ U(sigma - 0.1, sigma + 0.1) is split over the maps' singular values so that
    sum_i (s1_i + 2 s2_i) = a; then A_i = R(theta_i) diag(s1_i, s2_i) R(phi_i) D_i with
    uniform rotations and random sign flips D_i, t_i ~ U(-1, 1)^2, p_i ∝ |det A_i|.
    Call :func:`check_sigma` on user input first; this function is jit-able and does not check.

    Returns:
      An :class:`IFS` with ``maps: float32[n_maps, 6]``, ``probs: float32[n_maps]``.
    """
    k_a, k_sv, k_rot, k_flip, k_t = jax.random.split(key, 5)
    a = jax.random.uniform(k_a, minval=sigma - SIGMA_HALF_WIDTH, maxval=sigma + SIGMA_HALF_WIDTH)
    a = jnp.clip(a, 1e-6, 3.0 * n_maps)
    svs = sample_singular_values(k_sv, a, n_maps)  # [N, 2]
    angles = jax.random.uniform(k_rot, (2, n_maps), maxval=2 * jnp.pi)
    flips = jnp.where(jax.random.bernoulli(k_flip, 0.5, (n_maps, 2)), -1.0, 1.0)
    lin = (
        _rotation(angles[0])
        @ (svs[:, :, None] * jnp.eye(2))
        @ _rotation(angles[1])
        @ (flips[:, :, None] * jnp.eye(2))
    )  # [N, 2, 2]
    t = jax.random.uniform(k_t, (n_maps, 2), minval=-1.0, maxval=1.0)
    maps = jnp.concatenate([lin.reshape(n_maps, 4), t], -1)
    return IFS(maps, map_probs(maps))


def sample_uniform(key: jax.Array, n_maps: jax.Array | int, max_maps: int) -> IFS:
    """A FractalDB-style IFS: all 6 parameters of each map ~ U(-1, 1).

    Args:
      key: PRNG key.
      n_maps: number of maps actually used (may be traced, e.g. drawn from 2..8).
      max_maps: static padded size N; maps ``>= n_maps`` get probability 0.

    Returns:
      An :class:`IFS` with ``maps: float32[max_maps, 6]``, ``probs: float32[max_maps]``.
    """
    maps = jax.random.uniform(key, (max_maps, 6), minval=-1.0, maxval=1.0)
    valid = jnp.arange(max_maps) < n_maps
    maps = jnp.where(valid[:, None], maps, 0.0)
    return IFS(maps, map_probs(maps, valid))


def perturb_one(key: jax.Array, base: IFS, delta: float, keep_probs: bool = True) -> IFS:
    """One LIEP perturbation of ``base``: every one of its 6N parameters times its own
    u ~ U(1 - delta, 1 + delta), as the official 1p-frac code does.

    Args:
      key: PRNG key.
      base: an unbatched IFS, ``maps: float32[N, 6]``.
      delta: relative half-width Delta >= 0.
      keep_probs: keep the base system's map probabilities (official: they are computed once
        from the base fractal); False recomputes them from the perturbed determinants.
    """
    u = jax.random.uniform(key, base.maps.shape, minval=1.0 - delta, maxval=1.0 + delta)
    maps = base.maps * u
    probs = base.probs if keep_probs else map_probs(maps, base.probs > 0)
    return IFS(maps, probs)


def perturb(key: jax.Array, base: IFS, num: int, delta: float, keep_probs: bool = True) -> IFS:
    """LIEP: ``num`` locally perturbed copies of ``base`` (the 1p-frac classes).

    Class l is :func:`perturb_one` with key ``fold_in(fold_in(key, l), 0)`` (attempt 0 of
    the per-class rejection in ``fractaljax.sources``). The paper writes the perturbation
    additively, theta + eps with eps ~ U([-delta/2, delta/2]^{6N}) (so its Delta is a width,
    not a relative scale); the official code, followed here, multiplies each parameter by
    u ~ U(1 - delta, 1 + delta), which keeps a parameter's sign and scales with its magnitude.

    Args:
      key: PRNG key; class l depends only on (key, l).
      base: an unbatched IFS, ``maps: float32[N, 6]``.
      num: number of classes L.
      delta: relative half-width Delta >= 0.
      keep_probs: see :func:`perturb_one`.

    Returns:
      An :class:`IFS` with ``maps: float32[num, N, 6]``, ``probs: float32[num, N]``.
    """
    one = lambda i: perturb_one(
        jax.random.fold_in(jax.random.fold_in(key, i), 0), base, delta, keep_probs
    )
    return jax.vmap(one)(jnp.arange(num))
