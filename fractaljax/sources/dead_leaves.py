"""Dead leaves (Baradad et al., "Learning to See by Looking at Noise", NeurIPS 2021): shapes of
random colour and power-law size dropped one over another until they cover the canvas, on
device.

The official generator (generate_datasets/dead_leaves/generate_dataset.py of
mbaradad/learning_with_noise, ``dead_leaves``, L9-84; OpenCV) draws, until no pixel is
black or 5,000 shapes: a shape (``shape_mode``: 'square', the script's default, or one of
'circle', 'oriented_square', 'rectangle', 'triangle', 'quadrilater', or 'mixed': one of the
six uniformly, L27-31), a colour ``int(U(0, 1) x 255)`` per channel (L33), a radius from the
discretised law p(r) ~ r^-sigma - 1 on 200 points of [0.03, 1] (sigma 3; inverse CDF by
the nearest point, L13-23, L35-37) times the resolution, truncated, at least 1, and a
centre ``int32(U(0, res))`` per axis (L39); circles are filled discs (``cv2.circle``),
the others convex polygons with int32 corners (``cv2.fillPoly``): a square of side
``r sqrt 2`` (L43-47), rotated by U(0, 2 pi) (L48-51), a rectangle from one corner at
angle U(0, pi/2) on the circle of radius r and its mirror images (L52-58), or 3 or 4
sorted angles U(0, 2 pi) on that circle (L60-65). Each shape covers those before it.

Here (all shapes of an image at once): a pixel takes the colour of the last shape that
covers it among the first t*, where t* is the first shape after which every pixel is
covered (the official stop; ``source.max_shapes`` if never). Discs: ``dx^2 + dy^2 <= r^2``
(``cv2.circle``'s filled disc); polygons: pixel centres inside or on the edges of the int32
polygon (half-plane tests). docs/fidelity.md measures the agreement with OpenCV.

The paper trains contrastively on 105k images; for the LPCE recipes here, ``dead_leaves``
is OFDB-like: ``source.num_classes`` fixed images, one class each (a deliberate difference,
named in docs/fidelity.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import keys as keys_lib
from fractaljax.errors import ConfigError
from fractaljax.sources.base import Source, bank_draw, check_range, render_bank, render_spec

SHAPES = ("circle", "square", "oriented_square", "rectangle", "triangle", "quadrilater")
MODES = SHAPES + ("mixed",)
R_MIN, R_MAX, R_POINTS = 0.03, 1.0, 200  # the official radius grid (L11-12, L15-16)
CHUNK = 128  # shapes tested per scan step: one [CHUNK, H, W] block in memory


def radius_cdf(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The official radius grid and its normalised cumulative law (L15-23)."""
    r = np.linspace(R_MIN, R_MAX, R_POINTS)
    dist = 1.0 / r**sigma
    if sigma > 0:
        dist = dist - 1 / R_MAX**sigma
    cdf = np.cumsum(dist)
    return r, cdf / cdf.max()


def draw_shapes(key: jax.Array, src, res: int) -> dict[str, jax.Array]:
    """The official draws of ``source.max_shapes`` shapes for one ``res`` px image: ``kind
    int32[S]`` (index into SHAPES), ``centre int32[S, 2]`` (x, y), ``radius int32[S]``,
    ``color int32[S, 3]``, ``corners int32[S, 4, 2]`` (absolute; triangles repeat their
    last corner)."""
    s = int(src.max_shapes)
    ks = jax.random.split(key, 7)
    if src.shape_mode == "mixed":
        kind = jax.random.randint(ks[0], (s,), 0, len(SHAPES))
    else:
        kind = jnp.full((s,), SHAPES.index(src.shape_mode))
    color = (jax.random.uniform(ks[1], (s, 3)) * 255).astype(jnp.int32)
    r_list, cdf = radius_cdf(float(src.sigma))
    u = jax.random.uniform(ks[2], (s,))
    r_i = jnp.argmin(jnp.abs(jnp.asarray(cdf, jnp.float32)[None] - u[:, None]), axis=1)
    radius = jnp.maximum((jnp.asarray(r_list, jnp.float32)[r_i] * res).astype(jnp.int32), 1)
    centre = jax.random.uniform(ks[3], (s, 2), maxval=res).astype(jnp.int32)
    rf = radius.astype(jnp.float32)[:, None]

    # Square: corners +-side/2 truncated to int32 first (L44-47), rotated when oriented.
    half = rf * np.sqrt(2) / 2
    unit = jnp.asarray([[-1, -1], [1, -1], [1, 1], [-1, 1]], jnp.float32)
    square = jnp.trunc(half[:, :, None] * unit[None]).astype(jnp.float32)  # [S, 4, 2]
    theta = jax.random.uniform(ks[4], (s,), maxval=2 * np.pi)
    c, sn = jnp.cos(theta)[:, None], jnp.sin(theta)[:, None]
    rotated = jnp.stack(
        [c * square[..., 0] - sn * square[..., 1], sn * square[..., 0] + c * square[..., 1]], -1
    )
    # Rectangle: one corner at angle a in [0, pi/2) and its mirror images (L52-58).
    a = jax.random.uniform(ks[5], (s, 1), maxval=0.5 * np.pi)
    ca, sa = jnp.trunc(rf * jnp.cos(a)), jnp.trunc(rf * jnp.sin(a))
    rect = jnp.stack(
        [jnp.concatenate(p, -1) for p in ((ca, sa), (ca, -sa), (-ca, -sa), (-ca, sa))], 1
    )
    # Triangle / quadrilateral: 3 or 4 sorted angles on the circle (L60-65).
    u_ang = jax.random.uniform(ks[6], (s, 4), maxval=2 * np.pi)
    ang = jnp.sort(u_ang, axis=1)
    ang3 = jnp.sort(u_ang[:, :3], axis=1)  # 3 independent angles (not the 3 smallest of 4)
    ang3 = jnp.concatenate([ang3, ang3[:, 2:]], axis=1)  # the third corner twice
    on_circle = lambda t: jnp.stack([rf * jnp.cos(t), rf * jnp.sin(t)], -1)  # noqa: E731

    rel = jnp.select(
        [
            (kind == 1)[:, None, None],
            (kind == 2)[:, None, None],
            (kind == 3)[:, None, None],
            (kind == 4)[:, None, None],
        ],
        [square, rotated, rect, on_circle(ang3)],
        on_circle(ang),
    )
    # The corners are absolute and cast to int32 (toward zero) as fillPoly receives them.
    corners = jnp.trunc(centre[:, None, :].astype(jnp.float32) + rel).astype(jnp.int32)
    return dict(kind=kind, centre=centre, radius=radius, color=color, corners=corners)


def _covers(d: dict, res: int) -> jax.Array:
    """``bool[S, res, res]``: which shapes cover which pixel centres."""
    y, x = jnp.mgrid[:res, :res]
    x, y = x[None].astype(jnp.float32), y[None].astype(jnp.float32)
    cx = d["centre"][:, 0, None, None].astype(jnp.float32)
    cy = d["centre"][:, 1, None, None].astype(jnp.float32)
    r = d["radius"][:, None, None].astype(jnp.float32)
    disc = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    p = d["corners"].astype(jnp.float32)  # [S, 4, 2]
    q = jnp.roll(p, -1, axis=1)
    # Convex polygon, either orientation: every edge's cross product has one sign (or 0).
    cross = (q[..., 0] - p[..., 0])[..., None, None] * (y[:, None] - p[..., 1, None, None]) - (
        q[..., 1] - p[..., 1]
    )[..., None, None] * (x[:, None] - p[..., 0, None, None])  # [S, 4, H, W]
    poly = jnp.all(cross >= 0, axis=1) | jnp.all(cross <= 0, axis=1)
    # fillPoly also draws the outline (8-connected lines): a pixel within half a pixel of an
    # edge along its minor axis, inside the edge's box.
    ex, ey = (q - p)[..., 0], (q - p)[..., 1]  # [S, 4]
    major = jnp.maximum(jnp.maximum(jnp.abs(ex), jnp.abs(ey)), 1.0)[..., None, None]
    e_lo, e_hi = jnp.minimum(p, q), jnp.maximum(p, q)  # [S, 4, 2]
    on_edge = (
        (jnp.abs(cross) <= 0.5 * major)
        & (x[:, None] >= e_lo[..., 0, None, None])
        & (x[:, None] <= e_hi[..., 0, None, None])
        & (y[:, None] >= e_lo[..., 1, None, None])
        & (y[:, None] <= e_hi[..., 1, None, None])
    )
    poly |= jnp.any(on_edge, axis=1)
    # Within the corners' box too: a degenerate (flat) polygon is a segment, not its line.
    lo, hi = p.min(axis=1), p.max(axis=1)  # [S, 2]
    poly &= (x >= lo[:, 0, None, None]) & (x <= hi[:, 0, None, None])
    poly &= (y >= lo[:, 1, None, None]) & (y <= hi[:, 1, None, None])
    return jnp.where((d["kind"] == 0)[:, None, None], disc, poly)


def paint(d: dict, res: int) -> jax.Array:
    """The official painter's loop, at once: ``uint8``-valued ``float32[res, res, 3]`` / 255."""
    s = d["kind"].shape[0]
    n_chunks = -(-s // CHUNK)
    pad = n_chunks * CHUNK - s
    chunks = jax.tree.map(
        lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
            (n_chunks, CHUNK) + a.shape[1:]
        ),
        d,
    )
    big = jnp.int32(2**30)

    def first_cover(first, i_chunk):
        chunk = jax.tree.map(lambda a: a[i_chunk], chunks)
        idx = i_chunk * CHUNK + jnp.arange(CHUNK)
        hit = _covers(chunk, res) & (idx < s)[:, None, None]
        return jnp.minimum(first, jnp.min(jnp.where(hit, idx[:, None, None], big), 0)), None

    first, _ = jax.lax.scan(first_cover, jnp.full((res, res), big), jnp.arange(n_chunks))
    # The official loop stops after the shape that covers the last black pixel.
    stop = jnp.where(jnp.all(first < big), jnp.max(first), s - 1)

    def last_cover(last, i_chunk):
        chunk = jax.tree.map(lambda a: a[i_chunk], chunks)
        idx = i_chunk * CHUNK + jnp.arange(CHUNK)
        hit = _covers(chunk, res) & (idx <= stop)[:, None, None]
        return jnp.maximum(last, jnp.max(jnp.where(hit, idx[:, None, None], -1), 0)), None

    last, _ = jax.lax.scan(last_cover, jnp.full((res, res), -1), jnp.arange(n_chunks))
    color = jnp.where(last[..., None] >= 0, d["color"][jnp.maximum(last, 0)], 0)
    return color.astype(jnp.float32) / 255.0


def _check(src) -> None:
    if src.shape_mode not in MODES:
        raise ConfigError(f"source.shape_mode={src.shape_mode!r}: must be one of {MODES}")
    check_range(src, "num_classes", lo=1)
    check_range(src, "max_shapes", lo=1, hi=100_000)
    check_range(src, "sigma", lo=0.0, hi=10.0)


def image_keys(config: ml_collections.ConfigDict, labels) -> jax.Array:
    """Class l's image key: its one fixed image is a pure function of (seed, l)."""
    base = keys_lib.stream(config.seed, "dead_leaves")
    return jax.vmap(lambda c: jax.random.fold_in(base, c))(labels)


def images_of(config: ml_collections.ConfigDict, labels) -> jax.Array:
    """``float32[B, H, W, C]``: the fixed images of classes ``labels``."""
    spec = render_spec(config)
    res = spec.image_size
    draw = lambda k: paint(draw_shapes(k, config.source, res), res)  # noqa: E731
    images = jax.lax.map(draw, image_keys(config, labels))  # one image's [CHUNK, H, W] at a time
    if spec.channels == 1:
        images = images.mean(-1, keepdims=True)
    return images


def make_dead_leaves(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """``dead_leaves``: ``source.num_classes`` fixed dead-leaves images, one class each,
    drawn once into a ``uint8`` device bank."""
    del cache_dir
    _check(config.source)
    spec = render_spec(config)
    if spec.channels not in (1, 3):
        raise ConfigError(f"render.channels={spec.channels}: dead leaves are RGB (3) or gray (1)")
    # RGB whatever render.color says (the source sweep keeps 1p-frac's render block).
    bank = render_bank(
        lambda labels: images_of(config, labels),
        config.source.num_classes,
        dataclasses.replace(spec, color=spec.channels == 3),
    )

    n, draw = config.source.num_classes, bank_draw(spec.channels)
    return Source("dead_leaves", n, spec, draw, arrays={"bank": bank}, gray=spec.channels == 1)
