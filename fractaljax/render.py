"""Chaos-game fractal renderer in pure JAX, vmapped over a batch of IFS.

One image = ``walkers * steps`` points (the paper draws 100k): instead of one sequential
100k-step walk, ``walkers`` short walks run in parallel for ``steps`` steps each after
``burn_in`` unrecorded steps. Points are rescaled to the canvas by the min/max of the walk
(with a pad), counted into a pixel grid by a scatter-add, and optionally dilated by random
3x3 patches. Everything is static-shaped and runs inside ``jit`` on CPU, GPU and TPU.

Randomness: the map choices come from uniforms drawn with the key's ``walk`` stream. With
``shared_walk=True`` (the default, as in 1p-frac, whose official generator uses one fixed
seed for every class) all images of a batch share one map-choice sequence, so two classes
differ only in their parameters, and the uniforms are drawn once per batch instead of once
per image. The patch masks use a per-image 32-bit seed and an integer hash of the pixel
index: nine Bernoulli draws per pixel from the default PRNG cost more than the rest of the
renderer on a CPU, and the masks need no cryptographic quality.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from fractaljax.ifs import IFS, ConfigError

PATCH_MODES = ("none", "pixel")
BACKGROUNDS = ("black", "random")
# Points are kept within +-_BIG so that diverging (non-contractive) systems stay finite.
_BIG = 1e30


@dataclasses.dataclass(frozen=True)
class RenderSpec:
    """Static rendering options (hashable, so a spec can be a ``jit`` static argument).

    Attributes:
      image_size: square canvas side H = W in pixels.
      walkers: parallel chaos-game walks per image.
      steps: recorded steps per walker; points per image = walkers * steps.
      burn_in: unrecorded steps per walker from the start point (0, 0).
      pad: margin in pixels between the fractal's bounding box and the canvas edge.
      patch: ``'pixel'``: every lit pixel is drawn as a 3x3 patch with its own random
        non-empty 9-bit mask (the paper draws a random patch per point; a pixel hit by
        several points gets the union of their masks there, one mask here);
        ``'none'``: one pixel per point.
      color: False: gray level ``gray_level`` on black (the paper); True: each image gets a
        random linear colour gradient over the canvas.
      channels: 1 or 3 output channels (colour needs 3).
      gray_level: intensity of lit pixels in [0, 1]; the paper uses 127/255.
      shared_walk: all images of a batch share one map-choice sequence (see module doc).
      background: ``'black'`` (the paper) or ``'random'``: each image gets a random dark
        colour gradient (gray with one channel) behind the fractal, so that the network
        cannot rely on "black = background" (as the catalys1/fractal-pretraining option).
    """

    image_size: int = 224
    walkers: int = 1000
    steps: int = 100
    burn_in: int = 20
    pad: int = 3
    patch: str = "pixel"
    color: bool = False
    channels: int = 3
    gray_level: float = 127.0 / 255.0
    shared_walk: bool = True
    background: str = "black"

    @property
    def num_points(self) -> int:
        return self.walkers * self.steps

    def validate(self, prefix: str = "render") -> RenderSpec:
        """Raise :class:`ConfigError` naming the first bad field; return self otherwise."""
        for name in ("image_size", "walkers", "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{prefix}.{name}={getattr(self, name)}: must be >= 1")
        if self.burn_in < 0:
            raise ConfigError(f"{prefix}.burn_in={self.burn_in}: must be >= 0")
        if not 0 <= 2 * self.pad < self.image_size:
            raise ConfigError(
                f"{prefix}.pad={self.pad}: must be in [0, {(self.image_size - 1) // 2}] "
                f"for image_size={self.image_size}"
            )
        if self.patch not in PATCH_MODES:
            raise ConfigError(f"{prefix}.patch={self.patch!r}: must be one of {PATCH_MODES}")
        if self.channels not in (1, 3):
            raise ConfigError(f"{prefix}.channels={self.channels}: must be 1 or 3")
        if self.color and self.channels != 3:
            raise ConfigError(f"{prefix}.color=True needs {prefix}.channels=3")
        if self.background not in BACKGROUNDS:
            raise ConfigError(
                f"{prefix}.background={self.background!r}: must be one of {BACKGROUNDS}"
            )
        if not 0.0 < self.gray_level <= 1.0:
            raise ConfigError(f"{prefix}.gray_level={self.gray_level}: must be in (0, 1]")
        return self


def _thresholds(probs: jax.Array) -> jax.Array:
    """``float32[N] -> float32[N]``: map k is chosen when u > thr[k] (the last such k wins).

    thr[k] is the cumulative probability of the maps before k; maps with probability 0 get
    +inf so that they are never chosen, whatever rounding does to the cumulative sum.
    """
    thr = jnp.cumsum(probs) - probs
    return jnp.where(probs > 0, thr, jnp.inf)


def _sanitize_maps(maps: jax.Array) -> jax.Array:
    return jnp.clip(jnp.nan_to_num(maps, nan=0.0), -_BIG, _BIG)


def walk(ifs: IFS, u: jax.Array, burn_in: int) -> tuple[jax.Array, jax.Array]:
    """Chaos game of a batch of IFS, ``W`` walks per system in parallel.

    Args:
      ifs: ``maps: float32[B, N, 6]``, ``probs: float32[B, N]``.
      u: uniforms in [0, 1) that choose the maps: ``float32[burn_in + T, W]`` shared by all
        systems, or ``float32[burn_in + T, B, W]`` per system.
      burn_in: number of leading steps of ``u`` whose points are not recorded.

    Returns:
      ``(x_TBW, y_TBW)``, the recorded points. Diverging systems can give inf or NaN;
      :func:`rasterize` maps those to finite values (fused there into a pass it makes anyway).
    """
    maps = _sanitize_maps(ifs.maps)  # [B, N, 6]
    thr = jax.vmap(_thresholds)(ifs.probs)  # [B, N]
    n = maps.shape[1]
    if u.ndim == 2:
        u = u[:, None, :]  # [S, 1, W]: one sequence, broadcast over the batch
    coef_k = [[maps[:, k, j, None] for j in range(6)] for k in range(n)]  # [B, 1] each
    thr_k = [thr[:, k, None] for k in range(n)]

    def step(xy, u_BW):
        x, y = xy
        # Select coefficients by comparing with cumulative probabilities: much cheaper on
        # CPU than jax.random.categorical or a gather.
        coef = coef_k[0]
        for k in range(1, n):
            pick = u_BW > thr_k[k]
            coef = [jnp.where(pick, new, old) for new, old in zip(coef_k[k], coef)]
        a, b, c, d, e, f = coef
        # No clipping here (it costs a third of the walk): see Returns.
        xy = (a * x + b * y + e, c * x + d * y + f)
        return xy, xy

    zeros = jnp.zeros((maps.shape[0], u.shape[-1]), jnp.float32)
    xy, _ = jax.lax.scan(lambda c, u_BW: (step(c, u_BW)[0], None), (zeros, zeros), u[:burn_in])
    _, (x, y) = jax.lax.scan(step, xy, u[burn_in:])
    return x, y


def rasterize(x: jax.Array, y: jax.Array, size: int, pad: int) -> jax.Array:
    """Points ``float32[T, B, W]`` (any values, inf and NaN included) to lit pixels
    ``bool[B, size, size]``.

    Each image's points are rescaled, each axis independently, so that the walk's bounding
    box spans ``[pad, size - 1 - pad]``; row 0 is the top (largest y).
    """
    b = x.shape[1]
    span = size - 1 - 2 * pad

    def bounds(v):
        lo, hi = v.min((0, 2), keepdims=True), v.max((0, 2), keepdims=True)  # [1, B, 1]
        # min/max propagate NaN, so finite bounds mean every point is finite. A non-finite
        # or zero-width axis (a diverging walk, a point attractor) is drawn in the middle.
        ok = jnp.isfinite(lo) & jnp.isfinite(hi) & (hi > lo)
        return jnp.where(ok, lo, 0.0), jnp.where(ok, span / jnp.where(ok, hi - lo, 1.0), 0.0)

    # The barrier stops XLA from fusing the reductions into the per-point pass below, which
    # made it recompute them (4x slower on CPU).
    (lo_x, sc_x), (lo_y, sc_y) = jax.lax.optimization_barrier((bounds(x), bounds(y)))

    def scale(v, lo, sc):
        p = jnp.where(sc > 0, pad + (v - lo) * sc, 0.5 * (size - 1))
        return jnp.clip(jnp.round(p), 0, size - 1).astype(jnp.int32)

    col, row = scale(x, lo_x, sc_x), (size - 1) - scale(y, lo_y, sc_y)
    flat = (jnp.arange(b, dtype=jnp.int32)[:, None] * size + row) * size + col
    # One flat scatter of "set" over the whole batch: 3-4x faster on CPU than a vmapped
    # scatter-add of counts, and only occupancy is needed.
    lit = jnp.zeros(b * size * size, jnp.uint8).at[flat.reshape(-1)].set(1)
    return lit.reshape(b, size, size).astype(bool)


def _hash_u32(x: jax.Array) -> jax.Array:
    """The murmur3 32-bit finaliser: a cheap, well-mixed bijection of uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def patch_masks(seed: jax.Array, size: int) -> jax.Array:
    """Random non-empty 9-bit masks ``uint32[size, size]`` in [1, 511], one per pixel."""
    idx = jnp.arange(size * size, dtype=jnp.uint32).reshape(size, size)
    bits = _hash_u32(idx * jnp.uint32(0x9E3779B9) + seed) >> 23  # top 9 bits: [0, 511]
    return jnp.where(bits == 0, jnp.uint32(511), bits)


def dilate_patches(lit: jax.Array, masks: jax.Array) -> jax.Array:
    """Draw every lit pixel as a 3x3 patch with its own mask.

    Args:
      lit: ``bool[..., H, W]``.
      masks: ``uint32[..., H, W]``; bit ``3 * (dy + 1) + (dx + 1)`` of a pixel's mask lights
        the neighbour at offset (dy, dx).

    Returns:
      ``bool[..., H, W]``.
    """
    h, w = lit.shape[-2:]
    pad = [(0, 0)] * (lit.ndim - 2) + [(1, 1), (1, 1)]
    src = jnp.pad(jnp.where(lit, masks, jnp.uint32(0)), pad)  # [..., H + 2, W + 2]
    # Nine shifted reads of one padded array: XLA fuses them into a single pass.
    out = jnp.zeros(lit.shape, jnp.uint32)
    for k in range(9):
        dy, dx = k // 3 - 1, k % 3 - 1
        out = out | ((src[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w] >> k) & 1)
    return out.astype(bool)


def _color_gradient(
    key: jax.Array, size: int, lo: float = 0.2, hi: float = 1.0, channels: int = 3
) -> jax.Array:
    """A random linear gradient between two random colours in [lo, hi],
    ``float32[size, size, channels]``."""
    k_c, k_a = jax.random.split(key)
    c = jax.random.uniform(k_c, (2, channels), minval=lo, maxval=hi)
    angle = jax.random.uniform(k_a, maxval=2 * jnp.pi)
    g = jnp.linspace(-0.5, 0.5, size)
    t = jnp.cos(angle) * g[None, :] + jnp.sin(angle) * g[:, None]
    t = (t - t.min()) / (t.max() - t.min())
    return c[0] + t[..., None] * (c[1] - c[0])


def _walk_uniforms(spec: RenderSpec, key: jax.Array) -> jax.Array:
    """``float32[burn_in + steps, walkers]``."""
    return jax.random.uniform(key, (spec.burn_in + spec.steps, spec.walkers))


def render_with_fill(spec: RenderSpec, ifs: IFS, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Render a batch; also return each image's fill rate.

    Args:
      spec: rendering options.
      ifs: a batch of systems, ``maps: float32[B, N, 6]``, ``probs: float32[B, N]``.
      key: PRNG key; image i depends only on (key, i, ifs[i]) and, with
        ``spec.shared_walk``, on the batch-wide walk stream of ``key``.

    Returns:
      ``images: float32[B, H, W, C]`` in [0, 1], ``fill: float32[B]``: fraction of pixels
      hit by at least one point (before patches).
    """
    b, s = ifs.maps.shape[0], spec.image_size
    k_walk, k_img = jax.random.split(key)
    img_keys = jax.vmap(lambda i: jax.random.fold_in(k_img, i))(jnp.arange(b))
    if spec.shared_walk:
        u = _walk_uniforms(spec, k_walk)
    else:
        walk_u = lambda k: _walk_uniforms(spec, jax.random.fold_in(k, 2))
        u = jax.vmap(walk_u, out_axes=1)(img_keys)  # [S, B, W]
    x, y = walk(ifs, u, spec.burn_in)
    lit = rasterize(x, y, s, spec.pad)  # [B, H, W]
    fill = lit.mean((1, 2))
    if spec.patch == "pixel":
        seeds = jax.vmap(lambda k: jax.random.bits(jax.random.fold_in(k, 0), (), jnp.uint32))
        masks = jax.vmap(patch_masks, in_axes=(0, None))(seeds(img_keys), s)
        lit = dilate_patches(lit, masks)
    img = lit[..., None].astype(jnp.float32)
    if spec.color:
        colors = jax.vmap(lambda k: _color_gradient(jax.random.fold_in(k, 1), s))(img_keys)
        img = img * colors
    else:
        img = jnp.broadcast_to(img * spec.gray_level, (b, s, s, spec.channels))
    return add_background(spec, img, lit, img_keys), fill


def add_background(spec: RenderSpec, img: jax.Array, fg: jax.Array, keys: jax.Array) -> jax.Array:
    """Put ``spec.background`` behind the foreground.

    Args:
      img: ``float32[B, H, W, C]`` foreground colours.
      fg: ``bool[B, H, W]``, where the foreground is.
      keys: ``[B]`` per-image keys (the background uses their stream 3).

    Returns:
      ``img`` where ``fg``, the background elsewhere.
    """
    if spec.background == "black":
        return img
    s, c = img.shape[1], img.shape[-1]
    # Dark backgrounds (<= 0.4) keep the gray-127 or coloured fractal visible on top.
    bg = jax.vmap(lambda k: _color_gradient(jax.random.fold_in(k, 3), s, 0.0, 0.4, c))(keys)
    return jnp.where(fg[..., None], img, bg)


def render(spec: RenderSpec, ifs: IFS, key: jax.Array) -> jax.Array:
    """Render a batch of systems to ``float32[B, H, W, C]`` in [0, 1]; see
    :func:`render_with_fill`."""
    return render_with_fill(spec, ifs, key)[0]


def fill_rate(spec: RenderSpec, ifs: IFS, key: jax.Array) -> jax.Array:
    """Fraction of lit pixels of each system's point rendering, ``float32[B]``."""
    return render_with_fill(dataclasses.replace(spec, patch="none", color=False), ifs, key)[1]


def sample_filled(
    key: jax.Array,
    sampler,
    spec: RenderSpec,
    min_fill: float,
    max_tries: int = 100,
) -> tuple[IFS, jax.Array, jax.Array]:
    """Draw one system with ``sampler(key) -> IFS`` until its fill rate exceeds ``min_fill``.

    Bounded and jit-safe (a ``lax.while_loop`` of at most ``max_tries`` draws); vmap it to
    draw many. Degenerate systems (lines, points, diverging walks) have tiny fill rates and
    are redrawn.

    Returns:
      ``(ifs, fill, ok)``: the last system drawn, its fill rate, and whether it passed.
    """
    check = dataclasses.replace(spec, patch="none", color=False, shared_walk=True)

    def fill_of(k):
        ifs = sampler(k)
        f = render_with_fill(check, jax.tree.map(lambda a: a[None], ifs), k)[1][0]
        return ifs, f

    def body(state):
        i, _, _ = state
        ifs, f = fill_of(jax.random.fold_in(key, i))
        return i + 1, ifs, f

    ifs0, f0 = fill_of(jax.random.fold_in(key, 0))
    _, ifs, f = jax.lax.while_loop(
        lambda s: (s[0] < max_tries) & (s[2] <= min_fill), body, (jnp.int32(1), ifs0, f0)
    )
    return ifs, f, f > min_fill
