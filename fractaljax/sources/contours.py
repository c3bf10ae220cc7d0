"""Radial contours (RCDB: Kataoka et al., CVPR 2022) and VisualAtom (Takashima et al., CVPR
2023): classes of closed noisy orbits drawn as 1-pixel polylines, on device.

Both official generators (PIL + ``noise.pnoise1``, one PNG per image) draw an image of a
class the same way: an ellipse of V vertices (radius ``R``, axis ratios ``ox, oy``, centre
``(cx, cy)``) is moved K times, every move shifting vertex v radially by
``-(N_v - lw)`` with a fresh noise ``N_v`` per vertex and axis; after each move the closed
polygon is drawn in a fresh gray level (later contours over earlier ones). The two differ in
what the class fixes and in the noise:

=============== ==================================== =====================================
                RCDB (rcdb_render/make_rcdb.py)       VisualAtom (render_VisualAtom.py +
                                                      make_VisualAtom.sh)
=============== ==================================== =====================================
V               int(expovariate(1/100)) in 3..200     randint(200, 1000)
                (L53-57)                              (L61)
K, c, lw        randint(1, 200), U(0, 4), U(0, 0.1)   the same (L62-64; sh: perlin_min 0,
                (L59-61)                              line_width 0.1)
R               randint(0, 100), per image (L62,126)  randint(10, 60), per class (L65)
ox, oy          U(1, 2), per image (L63-64, 124-125)  U(1, 2), per class (L74-75)
centre          (512 + randint(-400, 400)) / 2,       (512 + randint(-512, 512)) / 2,
                per image (L65-66, 127-128)           per image (L76-77, 127-128)
noise N_v       pnoise1(U(0, 1e4)) 2c - c (L101-106)  pnoise1(U(0, 1e4)) c - c
                                                      - sin(theta v n1)/2 - sin(theta v n2)/2,
                                                      n1, n2 = randint(0, 20), n2 != n1
                                                      unless n1 = 0 (L66-72, 99-104)
gray            randint(0, 256), 256 drawn as 255     randint(0, 255) (L97)
                (L96)
background      white (L84)                           black (L85)
=============== ==================================== =====================================

(Line numbers: the files at masora1030/CVPR2022-Pretrained-ViT-PyTorch@7500c4d and
masora1030/CVPR2023-FDSL-on-VisualAtom@6ebfbdc.) The official data sets are fixed: 1000
PNG files a class; here ``source.data='fixed'`` makes image i of class l a pure function of
(seed, l, i), ``source.instances`` of them a class (``'stream'``: a fresh draw every step).
The official generators make the first image of a class with the class's own draw of the
per-image values; here every image draws them, so all images of a class are alike in law.
Coordinates are in the official 512 px units and scaled by ``render.image_size / 512``: at
512 px the drawing is the official one (PIL's ``ImageDraw.line``: endpoints truncated to
integers, Bresenham, width 1, no anti-aliasing), at a smaller canvas the same picture in
thinner strokes.

Drawing on device: every segment's pixels are Bresenham's, ``(x0 + sx floor((2 i |dx| + n)
/ 2n), ...)`` for ``i = 0..n``, ``n = max(|dx|, |dy|)`` (PIL's rule, endpoints included),
restricted to the part of the segment inside the canvas; the visible pixels of all segments
are laid end to end (a segment's first pixel, the last one of the segment before, left
out) and a fixed budget of ``source.stroke_budget x H`` points walks them (one compiled
shape); each pixel keeps the last contour drawn on it (a scatter-max of
contour indices). An image with more visible pixels than the budget is drawn with evenly
thinned strokes (docs/fidelity.md measures how often).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import keys as keys_lib
from fractaljax.errors import ConfigError
from fractaljax.sources.base import Source, bank_images, check_range, render_bank, render_spec
from fractaljax.sources.onepfrac import DATA_MODES

# Ken Perlin's permutation, as `noise` 1.2.2's _noise.h PERM (its first 256 entries).
PERLIN_PERM = np.array(
    [151, 160, 137, 91, 90, 15, 131, 13, 201, 95, 96, 53, 194, 233, 7, 225, 140, 36, 103, 30,
     69, 142, 8, 99, 37, 240, 21, 10, 23, 190, 6, 148, 247, 120, 234, 75, 0, 26, 197, 62, 94,
     252, 219, 203, 117, 35, 11, 32, 57, 177, 33, 88, 237, 149, 56, 87, 174, 20, 125, 136, 171,
     168, 68, 175, 74, 165, 71, 134, 139, 48, 27, 166, 77, 146, 158, 231, 83, 111, 229, 122,
     60, 211, 133, 230, 220, 105, 92, 41, 55, 46, 245, 40, 244, 102, 143, 54, 65, 25, 63, 161,
     1, 216, 80, 73, 209, 76, 132, 187, 208, 89, 18, 169, 200, 196, 135, 130, 116, 188, 159,
     86, 164, 100, 109, 198, 173, 186, 3, 64, 52, 217, 226, 250, 124, 123, 5, 202, 38, 147,
     118, 126, 255, 82, 85, 212, 207, 206, 59, 227, 47, 16, 58, 17, 182, 189, 28, 42, 223, 183,
     170, 213, 119, 248, 152, 2, 44, 154, 163, 70, 221, 153, 101, 155, 167, 43, 172, 9, 129,
     22, 39, 253, 19, 98, 108, 110, 79, 113, 224, 232, 178, 185, 112, 104, 218, 246, 97, 228,
     251, 34, 242, 193, 238, 210, 144, 12, 191, 179, 162, 241, 81, 51, 145, 235, 249, 14, 239,
     107, 49, 192, 214, 31, 181, 199, 106, 157, 184, 84, 204, 176, 115, 121, 50, 45, 127, 4,
     150, 254, 138, 236, 205, 93, 222, 114, 67, 29, 24, 72, 243, 141, 128, 195, 78, 66, 215,
     61, 156, 180],
    np.int32,
)  # fmt: skip

KINDS = ("radial_contour", "visual_atom")
BANK_LIMIT_BYTES = 4 * 2**30  # a device bank larger than this is refused
OFFICIAL_SIZE = 512  # the official canvas: the unit of every length below
# Canvas coordinates are clamped this far around the canvas so that the integer Bresenham
# arithmetic (2 i |dx| < 2^31) cannot overflow. Clamping x and y apart would bend a segment
# that reached it; the vertices drift about 1,000 official px at most, far inside.
_CLAMP = 4096.0


def pnoise1(x: jax.Array) -> jax.Array:
    """``noise.pnoise1(x)`` (the `noise` package 1.2.2, ``_perlin.c: noise1`` with one octave,
    repeat 1024, base 0), for ``x >= 0``; float32, as the C code."""
    fl = jnp.floor(x)
    i = fl.astype(jnp.int32) % 1024
    ii = (i + 1) % 1024
    perm = jnp.asarray(PERLIN_PERM)
    t = x - fl
    fade = t * t * t * (t * (t * 6 - 15) + 10)

    def grad(h, d):  # the C grad1, whose sign branch gives -1, not -g
        return jnp.where(h & 8, -1.0, (h & 7) + 1.0) * d

    a, b = grad(perm[i & 255], t), grad(perm[ii & 255], t - 1)
    return (a + fade * (b - a)) * 0.4


# --- classes and images ------------------------------------------------------------------


def class_params(key: jax.Array, num: int, kind: str, src) -> dict[str, jax.Array]:
    """The per-class draws of ``num`` classes (``[num]`` arrays; see the module table).

    Per-image values (RCDB's radius and axis ratios, both kinds' centre) are drawn here too,
    as the official first image of a class has them, but :func:`image_draws` redraws them.
    """
    ks = jax.random.split(key, 10)
    v_lo, v_hi = src.vertices
    if kind == "radial_contour":
        # int(expovariate(1/mean)) redrawn until in [v_lo, v_hi]: the exponential truncated
        # to [v_lo, v_hi + 1), floored (inverse CDF).
        lo, hi = np.exp(-v_lo / src.vertex_mean), np.exp(-(v_hi + 1) / src.vertex_mean)
        u = jax.random.uniform(ks[0], (num,))
        v = jnp.floor(-src.vertex_mean * jnp.log(lo - u * (lo - hi))).astype(jnp.int32)
        v = jnp.clip(v, v_lo, v_hi)  # float rounding at the ends
    else:
        v = jax.random.randint(ks[0], (num,), v_lo, v_hi + 1)
    n1 = jax.random.randint(ks[8], (num,), src.waves[0], src.waves[1] + 1)
    m = jax.random.randint(ks[9], (num,), src.waves[0], src.waves[1])  # one fewer value
    n2 = jnp.where(
        n1 == 0,
        jax.random.randint(jax.random.fold_in(ks[9], 1), (num,), src.waves[0], src.waves[1] + 1),
        m + (m >= n1),  # uniform over the values other than n1
    )
    return dict(
        vertices=v,
        contours=jax.random.randint(ks[1], (num,), src.contours[0], src.contours[1] + 1),
        perlin=jax.random.uniform(ks[2], (num,), minval=src.perlin[0], maxval=src.perlin[1]),
        line_width=jax.random.uniform(ks[3], (num,), maxval=src.line_width),
        radius=jax.random.randint(ks[4], (num,), src.radius[0], src.radius[1] + 1).astype(
            jnp.float32
        ),
        oval=jax.random.uniform(ks[5], (num, 2), minval=1.0, maxval=src.oval_rate),
        centre=_centres(ks[6], (num,), src.start_pos),
        waves=jnp.stack([n1, n2], -1).astype(jnp.float32),
    )


def _centres(key: jax.Array, shape: tuple[int, ...], start_pos: int) -> jax.Array:
    """``(512 + randint(-start_pos, start_pos)) / 2`` for x and y: ``float32[*shape, 2]``."""
    r = jax.random.randint(key, shape + (2,), -start_pos, start_pos + 1)
    return (OFFICIAL_SIZE + r).astype(jnp.float32) / 2


def image_draws(key: jax.Array, params: dict, kind: str, src, k_max: int, v_max: int) -> dict:
    """One image's random draws for a class ``params`` (scalars): the per-image geometry,
    the gray level of each of ``k_max`` contours and the noise inputs ``U(0, 1e4)`` of
    ``[k_max, v_max]`` vertices per axis."""
    ks = jax.random.split(key, 6)
    out = dict(params)
    out["centre"] = _centres(ks[0], (), src.start_pos)
    if kind == "radial_contour":
        out["radius"] = jax.random.randint(ks[1], (), src.radius[0], src.radius[1] + 1).astype(
            jnp.float32
        )
        out["oval"] = jax.random.uniform(ks[2], (2,), minval=1.0, maxval=src.oval_rate)
        gray = jnp.minimum(jax.random.randint(ks[3], (k_max,), 0, 257), 255)  # 256 -> 255
    else:
        gray = jax.random.randint(ks[3], (k_max,), 0, 256)
    out["gray"] = gray.astype(jnp.float32)
    out["u"] = jax.random.uniform(ks[4], (2, k_max, v_max), maxval=10000.0)
    return out


def vertices(d: dict, kind: str, k_max: int, v_max: int) -> tuple[jax.Array, jax.Array]:
    """Contour k's vertices ``x, y: float32[k_max, v_max]`` in official pixels (vertex
    ``v >= V`` unused), after its move: the official loop's state when contour k is drawn."""
    v = jnp.arange(v_max, dtype=jnp.float32)
    ang = (2 * jnp.pi / d["vertices"].astype(jnp.float32)) * v  # [V]
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    p = pnoise1(d["u"])  # [2, K, V]
    c = d["perlin"]
    if kind == "radial_contour":
        noise = p * (2 * c) - c
    else:
        n1, n2 = d["waves"][0], d["waves"][1]
        noise = p * c - c - 0.5 * jnp.sin(ang * n1) - 0.5 * jnp.sin(ang * n2)
    step = noise - d["line_width"]  # [2, K, V]
    x = cos * d["radius"] * d["oval"][0] - jnp.cumsum(cos * step[0], axis=0) + d["centre"][0]
    y = sin * d["radius"] * d["oval"][1] - jnp.cumsum(sin * step[1], axis=0) + d["centre"][1]
    return x, y


def _visible(a, d, n, size):
    """The range of ``i`` in ``[0, n]`` whose point ``a + d i / n`` is within a pixel of the
    canvas ``[0, size)`` along one axis (float bounds; exact tests come after)."""
    safe = jnp.where(d == 0, 1, d).astype(jnp.float32)
    t1 = (-1.0 - a) * n / safe
    t2 = (size - a) * n / safe
    inside = (a >= 0) & (a < size)
    lo = jnp.where(d == 0, jnp.where(inside, -jnp.inf, jnp.inf), jnp.minimum(t1, t2))
    hi = jnp.where(d == 0, jnp.where(inside, jnp.inf, -jnp.inf), jnp.maximum(t1, t2))
    return lo, hi


def segments_ended(ends: jax.Array, pos: jax.Array) -> jax.Array:
    """``searchsorted(ends, pos, side='right')`` for non-decreasing ``pos`` (``int32[P]``;
    ``ends int32[S]`` non-decreasing): how many segments end at or before each point.

    Counted from the other side: segment k ends before every point from
    ``searchsorted(pos, ends[k])`` on, so one search per segment and a running sum replace
    one search per point (the points outnumber the segments 10-100x).
    """
    passed = jnp.searchsorted(pos, ends, side="left")  # [S] in [0, P]
    ended = jnp.zeros(pos.shape[0] + 1, jnp.int32).at[passed].add(1)
    return jnp.cumsum(ended)[:-1]


def draw_polylines(
    x: jax.Array, y: jax.Array, num_vertices, num_contours, size: int, budget: int
) -> jax.Array:
    """The closed polygons ``(x[k], y[k])`` (canvas pixels, ``float32[K, V]``, the first
    ``num_contours`` rows and ``num_vertices`` columns in use) drawn as PIL draws them.

    Returns ``int32[size, size]``: 1 + the index of the last contour on each pixel, 0 where
    none is.
    """
    k_max, v_max = x.shape
    v = jnp.arange(v_max)
    nxt = jnp.where(v + 1 < num_vertices, v + 1, 0)
    # PIL truncates the float endpoints to integers (toward zero).
    clamp = lambda t: jnp.trunc(jnp.clip(t, -_CLAMP, size + _CLAMP)).astype(jnp.int32)
    x0, y0 = clamp(x), clamp(y)
    x1, y1 = x0[:, nxt], y0[:, nxt]
    dx, dy = x1 - x0, y1 - y0
    n = jnp.maximum(jnp.abs(dx), jnp.abs(dy))
    lo_x, hi_x = _visible(x0, dx, n, size)
    lo_y, hi_y = _visible(y0, dy, n, size)
    # Pixel 0 of segment v > 0 is pixel n of segment v - 1 (the same truncated vertex): each
    # pixel of a polygon is walked once, and short segments (most of them on a small
    # canvas) cost no points.
    first = jnp.where(v == 0, 0.0, 1.0)[None, :]
    lo = jnp.maximum(jnp.ceil(jnp.maximum(lo_x, lo_y)), first)
    hi = jnp.minimum(jnp.floor(jnp.minimum(hi_x, hi_y)), n.astype(jnp.float32))
    active = (jnp.arange(k_max)[:, None] < num_contours) & (v[None, :] < num_vertices)
    count = jnp.where(active, jnp.maximum(hi - lo + 1, 0), 0).astype(jnp.int32).ravel()
    ends = jnp.cumsum(count)  # [K V]: segment s's pixels are [ends[s] - count[s], ends[s])
    total = ends[-1]
    j = jnp.arange(budget)
    # Over budget: walk the visible pixels with an even stride (thinner strokes).
    stride = jnp.maximum(total.astype(jnp.float32) / budget, 1.0)
    pos = jnp.floor(j * stride).astype(jnp.int32)  # non-decreasing
    s = jnp.minimum(segments_ended(ends, pos), count.size - 1)
    i = lo.ravel()[s].astype(jnp.int32) + pos - (ends[s] - count[s])
    n_s = jnp.maximum(n.ravel()[s], 1)
    dx_s, dy_s = dx.ravel()[s], dy.ravel()[s]
    step = lambda d: jnp.sign(d) * ((2 * i * jnp.abs(d) + n_s) // (2 * n_s))  # Bresenham
    px, py = x0.ravel()[s] + step(dx_s), y0.ravel()[s] + step(dy_s)
    ok = (pos < total) & (px >= 0) & (px < size) & (py >= 0) & (py < size)
    idx = jnp.where(ok, py * size + px, size * size)  # out of range: dropped
    contour = s // v_max + 1
    canvas = jnp.zeros(size * size, jnp.int32).at[idx].max(contour, mode="drop")
    return canvas.reshape(size, size)


def render_image(d: dict, kind: str, src, size: int, budget: int) -> jax.Array:
    """One image ``float32[size, size]`` in [0, 1] from :func:`image_draws`' ``d``."""
    k_max, v_max = d["u"].shape[1:]
    x, y = vertices(d, kind, k_max, v_max)
    scale = size / OFFICIAL_SIZE
    last = draw_polylines(x * scale, y * scale, d["vertices"], d["contours"], size, budget)
    background = 255 if src.background == "white" else 0
    level = jnp.concatenate([jnp.asarray([background]), d["gray"].astype(jnp.int32)])[last]
    # k/255 by table, not a division (which XLA turns into a product one ulp off): the same
    # values as the uint8 bank's.
    return jnp.asarray(np.arange(256, dtype=np.float32) / np.float32(255))[level]


def _check(src, kind: str) -> None:
    for name in ("vertices", "contours", "radius", "waves", "perlin"):
        lo, hi = src[name]
        if not lo <= hi:
            raise ConfigError(f"source.{name}={tuple(src[name])}: need low <= high")
    if kind == "visual_atom" and src.waves[0] == src.waves[1] != 0:
        # The official sampler redraws n2 until n2 != n1 (or n1 == 0): it would never end.
        raise ConfigError(f"source.waves={tuple(src.waves)}: need low < high (or both 0)")
    check_range(src, "num_classes", lo=1)
    if src.vertices[0] < 3:
        raise ConfigError(f"source.vertices={tuple(src.vertices)}: a contour needs >= 3")
    check_range(src, "line_width", lo=0.0)
    check_range(src, "oval_rate", lo=1.0)
    check_range(src, "start_pos", lo=0, hi=4 * OFFICIAL_SIZE)
    check_range(src, "stroke_budget", lo=1, hi=2**16)
    if kind == "radial_contour":
        check_range(src, "vertex_mean", lo=1.0)
    if src.data not in DATA_MODES:  # 1p-frac's modes: 'fixed' (official) or 'stream'
        raise ConfigError(f"source.data={src.data!r}: must be one of {DATA_MODES}")
    check_range(src, "instances", lo=1)

    if src.background not in ("white", "black"):
        raise ConfigError(f"source.background={src.background!r}: must be 'white' or 'black'")


def classes(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """The L classes of the source ``config.source`` (:func:`class_params`, seeded)."""
    src = config.source
    # One compiled program rather than some hundreds of eager ops, each compiled on its own.
    draw = jax.jit(lambda key: class_params(key, src.num_classes, src.name, src))
    return draw(keys_lib.stream(config.seed, src.name))


def batch_draws(config: ml_collections.ConfigDict, params: dict, labels, keys) -> dict:
    """The draws of one image per label (``int32[B]``) from its key (``keys[B]``):
    :func:`image_draws` batched, each leaf ``[B, ...]``."""
    src = config.source
    k_max, v_max = src.contours[1], src.vertices[1]

    def one(label, k):
        p = jax.tree.map(lambda a: a[label], params)
        return image_draws(k, p, src.name, src, k_max, v_max)

    return jax.vmap(one)(labels, keys)


def instance_keys(
    config: ml_collections.ConfigDict, labels, instances, seed: int | jax.Array | None = None
) -> jax.Array:
    """The keys of the fixed images ``(labels[b], instances[b])``: image i of class l is a
    pure function of (seed, l, i), as the official data set is a fixed set of files
    (``seed``: ``config.seed`` unless given, e.g. traced)."""
    seed = config.seed if seed is None else seed
    base = jax.random.fold_in(keys_lib.stream(seed, config.source.name), 1)
    return jax.vmap(lambda c, i: jax.random.fold_in(jax.random.fold_in(base, c), i))(
        labels, instances
    )


def budget_of(config: ml_collections.ConfigDict, size: int) -> int:
    """The drawing budget (points) of a ``size`` px canvas."""
    return int(config.source.stroke_budget) * size


def images_of(config: ml_collections.ConfigDict, params: dict, labels, keys) -> jax.Array:
    """``float32[B, H, W, C]``: one image of class ``labels[b]`` drawn from ``keys[b]``."""
    src, spec = config.source, render_spec(config)
    size, budget = spec.image_size, budget_of(config, spec.image_size)
    d = batch_draws(config, params, labels, keys)
    images = jax.vmap(lambda x: render_image(x, src.name, src, size, budget))(d)
    return jnp.repeat(images[..., None], spec.channels, -1)


def fixed_images(
    config: ml_collections.ConfigDict,
    labels,
    instances,
    params: dict | None = None,
    seed: int | jax.Array | None = None,
) -> jax.Array:
    """``float32[B, H, W, C]``: the fixed images ``(labels[b], instances[b])``."""
    params = classes(config) if params is None else params
    return images_of(config, params, labels, instance_keys(config, labels, instances, seed))


def make_contours(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """``radial_contour`` (RCDB) or ``visual_atom`` (by ``source.name``): L classes from the
    seed (the module docstring has the laws), each a fixed set of ``source.instances``
    images as the official data sets (``source.data='fixed'``; kept on the device as a
    ``uint8`` bank with ``source.bank``), or a fresh draw every step (``'stream'``)."""
    del cache_dir
    src, kind = config.source, config.source.name
    _check(src, kind)
    spec = render_spec(config)
    params = classes(config)
    n_inst = int(src.instances)
    budget = budget_of(config, spec.image_size)
    info = dict(budget=budget, max_segments=src.contours[1] * src.vertices[1])
    # The class draws and the data set's seed are arrays: one compiled step for every seed.
    if src.data == "stream":
        arrays = {"params": params}

        def draw(arrays, labels, key):
            keys = jax.random.split(key, labels.shape[0])
            return images_of(config, arrays["params"], labels, keys)

    elif src.bank:
        size = src.num_classes * n_inst * spec.image_size**2  # bytes: one uint8 channel
        if size > BANK_LIMIT_BYTES:
            raise ConfigError(
                f"source.bank=True: {src.num_classes} x {n_inst} images of "
                f"{spec.image_size} px take {size / 2**30:.1f} GiB; set source.bank=False "
                "(rendered in the step) or fewer source.instances"
            )
        # Every image once, by flat index l * instances + i; then a gather per step.
        bank = render_bank(
            lambda ids: fixed_images(config, ids // n_inst, ids % n_inst, params),
            src.num_classes * n_inst,
            spec,
        )
        info["bank_bytes"] = int(bank.size)
        arrays = {"bank": bank}

        def draw(arrays, labels, key):
            inst = jax.random.randint(key, labels.shape, 0, n_inst)
            return bank_images(arrays["bank"], labels * n_inst + inst, spec.channels)

    else:
        arrays = {"params": params, "seed": np.int32(config.seed)}

        def draw(arrays, labels, key):
            inst = jax.random.randint(key, labels.shape, 0, n_inst)
            return fixed_images(config, labels, inst, arrays["params"], arrays["seed"])

    # One gray level per pixel, repeated over the channels (whatever render.color says).
    return Source(kind, src.num_classes, spec, draw, info=info, arrays=arrays, gray=True)
