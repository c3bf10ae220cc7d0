"""Chaos-game fractal renderer in pure JAX, vmapped over a batch of IFS.

By default an image is drawn as the official 1p-frac / FractalDB generator draws it
(``1p-frac_generater/src/ifs_function.py``): a 512 px canvas, the points rescaled by the
walk's min/max (``floor(pad + t * (size - 2 pad))``, pad 6), and every point pasted as a 3x3
patch (offset +1, +1 from the point) whose cells are a random non-empty 9-bit mask times gray
127, the zero cells pasted too, so in walk order the last point covering a pixel decides
it (``patch='paste'``): a speckled texture. The image is flipped top-bottom at the end.

Points: ``walkers * steps`` (the paper: 100k). Instead of one sequential 100k-step walk,
``walkers`` short walks run in parallel. With ``walk_start='attractor'`` (default) walker 0
*is* the official walk's beginning: it starts at (0, 0), that point included, and records
from its first step, so the origin and the transient towards the attractor are in the image
and in the rescale box, as in the official image; walkers 1.. start at the system's
invariant measure's mean (inside the attractor's convex hull) and run ``burn_in`` unrecorded
steps to spread over the attractor. With ``walkers=1, burn_in=0`` the walk is the official one.

Options kept for comparison (``RenderSpec``): ``patch='union'`` (one random mask per lit
pixel, the masks OR-ed: near-solid strokes), ``patch='none'`` (one pixel per point),
``walk_start='origin'`` (every walker from (0, 0) after ``burn_in`` unrecorded steps).

Randomness: the map choices come from uniforms drawn with the key's ``walk`` stream. With
``shared_walk=True`` (the default, as the official generator's fixed ``np.random.seed(100)``)
all images of a batch share one map-choice sequence, so two classes differ only in their
parameters. The patch masks are an integer hash of (a per-image 32-bit seed, the point
index): Bernoulli draws from the default PRNG cost more than the rest of the renderer on a
CPU, and the masks need no cryptographic quality.

Why one file of this size: the chaos-game walk, its rasterisers and the official paste rule
share RenderSpec and are read side by side when checking fidelity against the official
generator (docs/fidelity.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from fractaljax import sharding
from fractaljax.errors import ConfigError
from fractaljax.ifs import IFS

PATCH_MODES = ("paste", "union", "none")
WALK_STARTS = ("attractor", "origin")
BACKGROUNDS = ("black", "random")
RASTERIZERS = ("auto", "scatter", "scatter_map", "sort")
# With rasterizer 'scatter_map', render_with_fill walks this many images at a time (or the
# largest divisor of the batch below it): one chunk's walks (800 KB an image at 100k
# points) fit in a CPU's cache.
MAP_CHUNK = 16
# paste_patches packs a point index and its 9-bit mask into one int32: index * 512 + mask.
MAX_PASTE_POINTS = 2**22

# Points are kept within +-_BIG so that diverging (non-contractive) systems stay finite.
_BIG = 1e30


@dataclasses.dataclass(frozen=True)
class RenderSpec:
    """Static rendering options (hashable, so a spec can be a ``jit`` static argument).

    Attributes:
      image_size: square canvas side H = W in pixels (the official canvas: 512).
      walkers: parallel chaos-game walks per image.
      steps: recorded steps per walker; points per image = walkers * steps.
      burn_in: unrecorded steps of walkers 1.. (of every walker with ``walk_start='origin'``).
      pad: the official rescale margin: points span ``[pad, size - pad]`` (official: 6).
      patch: ``'paste'``: each point pastes a 3x3 patch of a random non-empty 9-bit mask,
        zero cells included, the last point in walk order wins (official); ``'union'``: each
        lit pixel gets one random mask and the masks are OR-ed; ``'none'``: one pixel per
        point.
      walk_start: ``'attractor'`` (walker 0 from the origin as the official walk, the others
        from a point of the attractor) or ``'origin'`` (all from the origin, burn-in).
      color: False: gray level ``gray_level`` on black (the paper); True: each image gets a
        random linear colour gradient over the canvas.
      channels: 1 or 3 output channels (colour needs 3).
      gray_level: intensity of lit pixels in [0, 1]; the paper uses 127/255.
      shared_walk: all images of a batch share one map-choice sequence (see module doc).
      background: ``'black'`` (the paper) or ``'random'``: each image gets a random dark
        colour gradient (gray with one channel) behind the fractal, so that the network
        cannot rely on "black = background" (as the catalys1/fractal-pretraining option).
      rasterizer: how points become pixels (:func:`last_point_index`; a walk's drawing is
        the same bit for bit): ``'scatter'`` (a scatter-max per image, vmapped over the
        batch: fastest on GPU), ``'scatter_map'`` (the same, one image after another with
        ``lax.map``, its rescale, scatter and pastes done while its canvas is in cache:
        fastest on a CPU, ~1.8x ``'scatter'`` for a whole render at 224 px, 1.1-1.3x at
        512 px; it would gather a batch split over devices onto each), ``'sort'`` (sort +
        binary search, no scatter: TPUs serialise scatters), ``'auto'``
        (:func:`resolve_rasterizer`).
    """

    image_size: int = 512
    walkers: int = 1000
    steps: int = 100
    burn_in: int = 20
    pad: int = 6
    patch: str = "paste"
    walk_start: str = "attractor"
    color: bool = False
    channels: int = 3
    gray_level: float = 127.0 / 255.0
    shared_walk: bool = True
    background: str = "black"
    rasterizer: str = "auto"

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
        if self.walk_start not in WALK_STARTS:
            raise ConfigError(
                f"{prefix}.walk_start={self.walk_start!r}: must be one of {WALK_STARTS}"
            )
        if self.channels not in (1, 3):
            raise ConfigError(f"{prefix}.channels={self.channels}: must be 1 or 3")
        if self.color and self.channels != 3:
            raise ConfigError(f"{prefix}.color=True needs {prefix}.channels=3")
        if self.background not in BACKGROUNDS:
            raise ConfigError(
                f"{prefix}.background={self.background!r}: must be one of {BACKGROUNDS}"
            )
        if self.patch == "paste" and self.num_points > MAX_PASTE_POINTS:
            raise ConfigError(
                f"{prefix}.walkers * {prefix}.steps = {self.num_points} points: "
                f"patch='paste' takes at most {MAX_PASTE_POINTS}"
            )
        if self.rasterizer not in RASTERIZERS:
            raise ConfigError(
                f"{prefix}.rasterizer={self.rasterizer!r}: must be one of {RASTERIZERS}"
            )
        if not 0.0 < self.gray_level <= 1.0:
            raise ConfigError(f"{prefix}.gray_level={self.gray_level}: must be in (0, 1]")
        return self


def _thresholds(probs: jax.Array) -> jax.Array:
    """``float32[N] -> float32[N]``: map k is chosen when u > thr[k] (the last such k wins).

    thr[k] is the cumulative probability of the maps before k, so this is the official rule
    "the first map j with u <= cumsum[j]". Maps with probability 0 get +inf so that they are
    never chosen, whatever rounding does to the cumulative sum.
    """
    thr = jnp.cumsum(probs) - probs
    return jnp.where(probs > 0, thr, jnp.inf)


def _sanitize_maps(maps: jax.Array) -> jax.Array:
    return jnp.clip(jnp.nan_to_num(maps, nan=0.0), -_BIG, _BIG)


def invariant_mean(maps: jax.Array, probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The mean m of each system's invariant measure, m = sum_k p_k (A_k m + t_k), i.e.
    m = (I - sum_k p_k A_k)^-1 sum_k p_k t_k.

    It lies in the convex hull of the attractor, which every map sends into itself, so walks
    started there never leave the attractor's bounding box; from its centre they spread over
    the attractor during the burn-in. (A fixed point of one map, also on the attractor, is
    an extreme point that a long walk rarely visits: 1000 walkers started there widened the
    box of slowly contracting sigma-5 systems by up to 40%.)

    Args:
      maps: ``float32[B, N, 6]``; probs: ``float32[B, N]``.

    Returns:
      ``(x_B, y_B)``; the origin where the mean is not finite.
    """
    a, b, c, d, e, f = (jnp.sum(probs * maps[..., j], -1) for j in range(6))
    den = (1 - a) * (1 - d) - b * c
    safe = jnp.where(jnp.abs(den) > 1e-6, den, 1.0)
    x, y = ((1 - d) * e + b * f) / safe, (c * e + (1 - a) * f) / safe
    ok = (jnp.abs(den) > 1e-6) & jnp.isfinite(x) & jnp.isfinite(y)
    return jnp.where(ok, x, 0.0), jnp.where(ok, y, 0.0)


def walk(
    ifs: IFS, u: jax.Array, burn_in: int, start: str = "attractor"
) -> tuple[jax.Array, jax.Array]:
    """Chaos game of a batch of IFS, ``W`` walks per system in parallel.

    Args:
      ifs: ``maps: float32[B, N, 6]``, ``probs: float32[B, N]``.
      u: uniforms in [0, 1) that choose the maps: ``float32[burn_in + T, W]`` shared by all
        systems, or ``float32[burn_in + T, B, W]`` per system.
      burn_in: number of leading steps of ``u`` whose points are not recorded.
      start: ``'attractor'``: walker 0 starts at (0, 0) and records from that point on (it
        does not move during the burn-in), walkers 1.. start at :func:`invariant_mean`;
        ``'origin'``: all walkers start at (0, 0) and record after the burn-in.

    Returns:
      ``(x_TBW, y_TBW)``, the recorded points in walk order (time-major). Diverging systems
      can give inf or NaN; :func:`rasterize` maps those to finite values.
    """
    maps = _sanitize_maps(ifs.maps)  # [B, N, 6]
    thr = jax.vmap(_thresholds)(ifs.probs)  # [B, N]
    n, w = maps.shape[1], u.shape[-1]
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
        return a * x + b * y + e, c * x + d * y + f

    zeros = jnp.zeros((maps.shape[0], w), jnp.float32)
    if start == "origin":
        xy, _ = jax.lax.scan(lambda c, u_BW: (step(c, u_BW), None), (zeros, zeros), u[:burn_in])
        _, (x, y) = jax.lax.scan(lambda c, u_BW: (step(c, u_BW),) * 2, xy, u[burn_in:])
        return x, y
    x0, y0 = invariant_mean(maps, ifs.probs)
    first = jnp.arange(w) == 0  # walker 0: the official walk from the origin
    xy = (jnp.where(first, 0.0, x0[:, None]), jnp.where(first, 0.0, y0[:, None]))

    def burn(c, u_BW):
        new = step(c, u_BW)
        return tuple(jnp.where(first, old, nw) for old, nw in zip(c, new)), None

    xy, _ = jax.lax.scan(burn, xy, u[:burn_in])
    # Emit the point before the step: walker 0's first point is the origin, as official.
    _, (x, y) = jax.lax.scan(lambda c, u_BW: (step(c, u_BW), c), xy, u[burn_in:])
    return x, y


# A walk beyond this radius has diverged: a converging sigma-factor system's attractor has a
# radius of about |t| / (1 - s1) <= ~1.5e3 even for maps that contract by only 0.999.
DIVERGED_RADIUS = 1e4


def diverges(ifs: IFS, u: jax.Array) -> jax.Array:
    """Whether each system's sequential walk from the origin leaves ``DIVERGED_RADIUS``.

    The official generator walks 100k steps in one sequence, so a slowly expanding
    perturbation (a map stretched past 1) has time to run away; the parallel renderer's
    short walkers may not, so the per-class rejection runs this probe beside the fill test.

    Args:
      ifs: ``maps: float32[B, N, 6]``, ``probs: float32[B, N]``.
      u: ``float32[T]`` map-choice uniforms, shared by all systems.

    Returns:
      ``bool[B]``.
    """
    maps = _sanitize_maps(ifs.maps)
    thr = jax.vmap(_thresholds)(ifs.probs)
    n = maps.shape[1]

    coef_k = [[maps[:, k, j] for j in range(6)] for k in range(n)]  # [B] each

    def step(carry, u_t):
        x, y, r = carry
        # The rule of walk(): the last map k with u > thr[k] (padding maps never match).
        coef = coef_k[0]
        for k in range(1, n):
            pick = u_t > thr[:, k]
            coef = [jnp.where(pick, new, old) for new, old in zip(coef_k[k], coef)]
        a, b, c, d, e, f = coef
        x, y = a * x + b * y + e, c * x + d * y + f
        # NaN compares false: keep it sticky through jnp.maximum.
        radius = jnp.maximum(jnp.abs(x), jnp.abs(y))
        r = jnp.maximum(r, jnp.where(jnp.isfinite(x) & jnp.isfinite(y), radius, jnp.inf))
        return (x, y, r), None

    zeros = jnp.zeros(maps.shape[0], jnp.float32)
    (_, _, r), _ = jax.lax.scan(step, (zeros, zeros, zeros), u)
    return ~(r <= DIVERGED_RADIUS)


def rasterize(
    x: jax.Array, y: jax.Array, size: int, pad: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Points ``float32[T, B, W]`` (any values, inf and NaN included) to pixel coordinates.

    The official rescale: each axis independently, ``floor(pad + t * (size - 2 pad))`` with
    t = (v - min) / (max - min) over the image's walk, then the image flipped top-bottom (row
    0 is the largest y). A non-finite or zero-width axis (a diverging walk, a point
    attractor) is drawn in the middle.

    Returns:
      ``(row, col)``: ``int32[T, B, W]`` in [0, size), and ``finite: bool[B]``, whether every
      point of the image was finite.
    """
    span = size - 2 * pad

    def bounds(v):
        lo, hi = v.min((0, 2), keepdims=True), v.max((0, 2), keepdims=True)  # [1, B, 1]
        # min/max propagate NaN, so finite bounds mean every point is finite.
        fin = jnp.isfinite(lo) & jnp.isfinite(hi)
        ok = fin & (hi > lo)
        sc = jnp.where(ok, span / jnp.where(ok, hi - lo, 1.0), 0.0)
        return jnp.where(ok, lo, 0.0), sc, fin

    # The barrier stops XLA from fusing the reductions into the per-point pass below, which
    # made it recompute them (4x slower on CPU).
    (lo_x, sc_x, fin_x), (lo_y, sc_y, fin_y) = jax.lax.optimization_barrier((bounds(x), bounds(y)))

    def scale(v, lo, sc):
        p = jnp.where(sc > 0, pad + (v - lo) * sc, 0.5 * (size - 1))
        return jnp.clip(jnp.floor(p), 0, size - 1).astype(jnp.int32)

    col, row = scale(x, lo_x, sc_x), (size - 1) - scale(y, lo_y, sc_y)
    return row, col, (fin_x & fin_y)[0, :, 0]


def hash_u32(x: jax.Array) -> jax.Array:
    """The murmur3 32-bit finaliser: a cheap, well-mixed bijection of uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def masks_of(seed: jax.Array, idx: jax.Array) -> jax.Array:
    """Random non-empty 9-bit masks, uniform on [1, 511], one per index (``uint32``).

    ``seed`` is a ``uint32`` scalar (or broadcastable); ``idx`` any non-negative int array.
    Bit ``8 - (3 i + j)`` of a mask is cell (i, j) of the 3x3 patch: the official code reads
    ``'{:09b}'.format(mask)`` most significant bit first, row by row.
    """
    h = hash_u32(idx.astype(jnp.uint32) * jnp.uint32(0x9E3779B9) + seed)
    return jnp.uint32(1) + h % jnp.uint32(511)


def resolve_rasterizer(rasterizer: str) -> str:
    """``'auto'`` -> ``'sort'`` on TPU, ``'scatter_map'`` on a single CPU device (where a
    batch gives no parallelism that one image lacks, and one image's canvas stays in cache),
    ``'scatter'`` elsewhere; other values as they are."""
    if rasterizer != "auto":
        return rasterizer
    if jax.default_backend() == "tpu":
        return "sort"
    return "scatter_map" if sharding.single_cpu_device() else "scatter"


def last_point_index(
    row: jax.Array, col: jax.Array, size: int, rasterizer: str = "scatter"
) -> jax.Array:
    """``int32[B, size, size]``: the walk-order index (t * W + w) of the last point that fell
    on each pixel, -1 where none did.

    Computed image by image (vmapped), so that a batch split over devices is rasterised
    where it lies, with no collective. ``rasterizer='scatter'``: a scatter-max of the walk
    indices. ``'sort'``: sort the (pixel, walk index) pairs, then for every pixel the last
    pair with that pixel, found by binary search; no scatter, the same result.

    Args:
      row, col: ``int32[T, B, W]`` pixel coordinates in [0, size) (:func:`rasterize`).
      size: the canvas side.
      rasterizer: ``'scatter'``, ``'sort'`` or ``'auto'`` (:func:`resolve_rasterizer`);
        ``'scatter_map'`` is ``'scatter'`` here (:func:`draw` maps it over the images).
    """
    t, b, w = row.shape
    if size * size >= 2**31 or t * w >= 2**31:
        raise ValueError(f"{t * w} points on {size}^2 px: too large for int32 pixel indices")
    method = resolve_rasterizer(rasterizer)
    method = "scatter" if method == "scatter_map" else method
    idx = jnp.arange(t * w, dtype=jnp.int32)  # walk order of the [T, W] points
    pixels = jnp.arange(size * size, dtype=jnp.int32)

    def scatter(pix):
        return jnp.full(size * size, -1, jnp.int32).at[pix].max(idx)

    def sort(pix):
        pix, order = jax.lax.sort((pix, idx), num_keys=2)  # by pixel, then walk order
        end = jnp.searchsorted(pix, pixels, side="right") - 1  # each pixel's last pair
        hit = (end >= 0) & (pix[jnp.maximum(end, 0)] == pixels)
        return jnp.where(hit, order[jnp.maximum(end, 0)], -1)

    if method not in ("scatter", "sort"):
        raise ValueError(f"rasterizer={rasterizer!r}: must be one of {RASTERIZERS}")
    one = scatter if method == "scatter" else sort
    flat = (row * size + col).transpose(1, 0, 2).reshape(b, t * w)  # [B, T*W] in walk order
    return jax.vmap(one)(flat).reshape(b, size, size)


def _patch_cells(a: jax.Array, fill) -> list[jax.Array]:
    """The nine views of ``a[..., H, W]`` that put, at each output pixel, the source pixel
    whose patch cell (i, j) lands there (cell k = 3 i + j, in the official geometry: a point
    at (r, c) of the flipped image pastes cell (i, j) at (r - 1 - i, c + 1 + j))."""
    h, w = a.shape[-2:]
    pads = [(0, 0)] * (a.ndim - 2) + [(0, 3), (3, 0)]
    p = jnp.pad(a, pads, constant_values=fill)
    # Output (r, c) reads source (r + 1 + i, c - 1 - j) = padded (r + 1 + i, c + 2 - j).
    return [p[..., 1 + k // 3 : 1 + k // 3 + h, 2 - k % 3 : 2 - k % 3 + w] for k in range(9)]


def paste_patches(last: jax.Array, seeds: jax.Array) -> jax.Array:
    """Official patches: every point pastes its whole 3x3 mask, zero cells included, in walk
    order, so at each pixel the covering point with the largest walk index decides.

    Exact: points that share a source pixel cover each output pixel with the same cell, so
    only the last of them can win there, and the winner of an output pixel is the largest of
    its nine candidate source pixels' last indices (:func:`last_point_index`).

    Args:
      last: ``int32[B, H, W]`` from :func:`last_point_index`, indices < ``MAX_PASTE_POINTS``.
      seeds: ``uint32[B]`` per-image mask seeds; point i's mask is ``masks_of(seed, i)``.

    Returns:
      ``bool[B, H, W]``.
    """
    masks = masks_of(seeds[:, None, None], jnp.maximum(last, 0)).astype(jnp.int32)
    # One key per source pixel, index * 512 + mask, -1 where empty: one padded array read
    # nine times (not an index and a mask array), so the stencil is one pass over the canvas.
    packed = jnp.where(last >= 0, last * 512 + masks, -1)
    best = jnp.full(last.shape, -1, jnp.int32)
    for k, p_k in enumerate(_patch_cells(packed, -1)):
        # 2 * index + the bit of cell k: the largest is the latest covering point's, and
        # its low bit is what that point pastes here.
        key_k = jnp.where(p_k >= 0, ((p_k >> 9) << 1) | ((p_k >> (8 - k)) & 1), -1)
        best = jnp.maximum(best, key_k)
    return (best >= 0) & ((best & 1) == 1)


def union_patches(lit: jax.Array, seeds: jax.Array) -> jax.Array:
    """The OR-ed variant: each lit pixel gets one random mask (a hash of its index), and an
    output pixel is lit when any covering cell's bit is set (near-solid strokes).

    Args:
      lit: ``bool[B, H, W]`` (a pixel was hit by a point); seeds: ``uint32[B]``.

    Returns:
      ``bool[B, H, W]``.
    """
    h, w = lit.shape[-2:]
    pix = jnp.arange(h * w, dtype=jnp.uint32).reshape(h, w)
    masks = jnp.where(lit, masks_of(seeds[:, None, None], pix), 0)
    out = jnp.zeros(lit.shape, jnp.uint32)
    for k, m_k in enumerate(_patch_cells(masks, 0)):
        out = out | ((m_k >> (8 - k)) & 1)
    return out.astype(bool)


def draw(
    spec: RenderSpec, x: jax.Array, y: jax.Array, seeds: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A walk's points to its drawing: rescale, rasterise, patches.

    With ``spec.rasterizer`` resolving to ``'scatter_map'`` the images are drawn one after
    another (``lax.map``); otherwise all at once. The result is the same bit for bit.

    Args:
      spec: rendering options (``image_size``, ``pad``, ``patch``, ``rasterizer``).
      x, y: ``float32[T, B, W]``, the walk of each image (:func:`walk`).
      seeds: ``uint32[B]`` per-image patch-mask seeds.

    Returns:
      ``lit: bool[B, H, W]`` and ``finite: bool[B]`` (:func:`rasterize`).
    """
    s = spec.image_size
    if spec.patch == "paste" and x.shape[0] * x.shape[2] > MAX_PASTE_POINTS:
        raise ValueError(
            f"{x.shape[0] * x.shape[2]} points: patch='paste' packs an index and a mask into "
            f"an int32, so it takes at most {MAX_PASTE_POINTS}"
        )

    def draw_all(x, y, seeds):
        row, col, finite = rasterize(x, y, s, spec.pad)
        last = last_point_index(row, col, s, spec.rasterizer)  # [B, H, W]
        if spec.patch == "paste":
            lit = paste_patches(last, seeds)
        elif spec.patch == "union":
            lit = union_patches(last >= 0, seeds)
        else:
            lit = last >= 0
        return lit, finite

    if resolve_rasterizer(spec.rasterizer) != "scatter_map":
        return draw_all(x, y, seeds)

    def one(i):
        # Image i's points are a strided slice of the time-major walk; its canvas (1 MB of
        # indices at 512 px) stays in cache from the scatter to the pastes.
        take = lambda a: jax.lax.dynamic_slice_in_dim(a, i, 1, axis=1)
        lit, finite = draw_all(take(x), take(y), jax.lax.dynamic_slice_in_dim(seeds, i, 1))
        return lit[0], finite[0]

    return jax.lax.map(one, jnp.arange(x.shape[1]))


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


def render_with_fill(
    spec: RenderSpec, ifs: IFS, key: jax.Array, image_keys: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Render a batch; also return each image's fill rate.

    Args:
      spec: rendering options.
      ifs: a batch of systems, ``maps: float32[B, N, 6]``, ``probs: float32[B, N]``.
      key: PRNG key of the walk (with ``spec.shared_walk`` one map-choice sequence for the
        whole batch) and, unless ``image_keys`` is given, of the images.
      image_keys: optional ``[B]`` keys, one per image, for its patch masks, colours and
        background (and its walk without ``shared_walk``). Passing keys that depend only on
        the class makes a class's image a pure function of the class: the fixed data set.

    Returns:
      ``images: float32[B, H, W, C]`` in [0, 1], ``fill: float32[B]``: the fraction of lit
      pixels of the drawing (after patches, as the official fill test), 0 where the walk
      diverged (a non-finite point).
    """
    b, s = ifs.maps.shape[0], spec.image_size
    k_walk, k_img = jax.random.split(key)
    if image_keys is None:
        image_keys = jax.vmap(lambda i: jax.random.fold_in(k_img, i))(jnp.arange(b))
    u_shared = _walk_uniforms(spec, k_walk) if spec.shared_walk else None

    def render_some(ifs, image_keys):
        n = ifs.maps.shape[0]
        if spec.shared_walk:
            u = u_shared
        else:
            walk_u = lambda k: _walk_uniforms(spec, jax.random.fold_in(k, 2))
            u = jax.vmap(walk_u, out_axes=1)(image_keys)  # [S, n, W]
        x, y = walk(ifs, u, spec.burn_in, spec.walk_start)
        seeds = jax.vmap(lambda k: jax.random.bits(jax.random.fold_in(k, 0), (), jnp.uint32))
        lit, finite = draw(spec, x, y, seeds(image_keys))
        fill = jnp.where(finite, lit.mean((1, 2)), 0.0)
        img = lit[..., None].astype(jnp.float32)
        if spec.color:
            colors = jax.vmap(lambda k: _color_gradient(jax.random.fold_in(k, 1), s))(image_keys)
            img = img * colors
        else:
            img = jnp.broadcast_to(img * spec.gray_level, (n, s, s, spec.channels))
        return add_background(spec, img, lit, image_keys), fill

    if resolve_rasterizer(spec.rasterizer) != "scatter_map":
        return render_some(ifs, image_keys)
    # Image after image (CPU): walk a few images at a time, so that their walks (800 KB an
    # image at 100k points) are still in cache when drawn; the walk of each image is the
    # same, whatever images share its chunk.
    c = max(d for d in range(1, MAP_CHUNK + 1) if b % d == 0)
    chunks = jax.tree.map(lambda a: a.reshape((b // c, c) + a.shape[1:]), (ifs, image_keys))
    img, fill = jax.lax.map(lambda a: render_some(*a), chunks)
    return img.reshape((b,) + img.shape[2:]), fill.reshape(b)


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


def render(
    spec: RenderSpec, ifs: IFS, key: jax.Array, image_keys: jax.Array | None = None
) -> jax.Array:
    """Render a batch of systems to ``float32[B, H, W, C]`` in [0, 1]; see
    :func:`render_with_fill`."""
    return render_with_fill(spec, ifs, key, image_keys)[0]


def fill_rate(spec: RenderSpec, ifs: IFS, key: jax.Array) -> jax.Array:
    """Fraction of lit pixels of each system's rendering at ``spec``, ``float32[B]``."""
    return render_with_fill(dataclasses.replace(spec, color=False, background="black"), ifs, key)[1]


def sample_filled(
    key: jax.Array,
    sampler,
    spec: RenderSpec,
    min_fill: float,
    max_tries: int = 100,
) -> tuple[IFS, jax.Array, jax.Array]:
    """Draw one system with ``sampler(key) -> IFS`` until its fill rate exceeds ``min_fill``.

    Bounded and jit-safe (a ``lax.while_loop`` of at most ``max_tries`` draws); vmap it to
    draw many. The fill rate is that of the drawing at ``spec`` (patches included). Degenerate
    systems (lines, points, diverging walks) have tiny fill rates and are redrawn.

    Returns:
      ``(ifs, fill, ok)``: the last system drawn, its fill rate, and whether it passed.
    """
    check = dataclasses.replace(spec, color=False, background="black", shared_walk=True)

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
