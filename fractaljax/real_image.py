"""One real image as a pre-training source: edges, and L perturbations of them.

1p-frac's §"single real image" replaces the fractal with one photograph: it is turned into
a grayscale Canny edge map (or kept as gray or RGB), and the L classes are L random
geometric perturbations of it, each of magnitude Delta. This module holds the pieces, all
pure JAX except the file loading:

* :func:`load_image`: a PNG/JPEG file to a centred square ``float32[S, S, 3]``;
* :func:`canny`: Canny edges (Gaussian blur, Sobel, non-maximum suppression, hysteresis);
* :func:`sample_warps` and :func:`warp`: per-class affine, polynomial or elastic warps, in
  coordinates normalised to [-1, 1] over the canvas, applied by bilinear resampling.

A warp maps each output pixel to the point of the source image it shows (a backward map):
the class is defined by the map either way, and the backward form needs no inversion.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError

from fractaljax.errors import ConfigError

PERTURBATIONS = ("affine", "polynomial", "elastic")
MODES = ("edges", "gray", "rgb")
# Monomials x^i y^j with 0 < i + j <= 3 (the constant term is a translation, included too).
_POLY_POWERS = [(i, d - i) for d in range(4) for i in range(d, -1, -1)]


def default_image_path() -> str:
    """scikit-learn's bundled ``china.jpg`` (a temple; public domain), always installed."""
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")


def load_image(path: str, size: int, field: str = "source.image_path") -> np.ndarray:
    """The largest centred square of an image file, resized to ``float32[size, size, 3]``."""
    path = path or default_image_path()
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            im = im.resize((size, size), Image.Resampling.LANCZOS, box=box)
            return np.asarray(im, np.float32) / 255.0
    except FileNotFoundError:
        raise ConfigError(f"{field}={path!r}: no such file; give a PNG or JPEG path") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(
            f"{field}={path!r}: not a readable image ({e}); give a PNG or JPEG"
        ) from None


def to_gray(rgb: jax.Array) -> jax.Array:
    """``float32[..., 3] -> float32[...]`` (ITU-R 601 luma)."""
    return rgb @ jnp.array([0.299, 0.587, 0.114], rgb.dtype)


def _blur(img: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of ``float32[H, W]`` with edge padding."""
    r = max(int(np.ceil(3 * sigma)), 1)
    k = jnp.exp(-0.5 * (jnp.arange(-r, r + 1) / sigma) ** 2)
    k = k / k.sum()
    p = jnp.pad(img, r, mode="edge")
    p = jax.vmap(lambda row: jnp.convolve(row, k, mode="valid"))(p)
    return jax.vmap(lambda col: jnp.convolve(col, k, mode="valid"), 1, 1)(p)


def _shift(a: jax.Array, dy: int, dx: int, mode: str = "constant") -> jax.Array:
    """``out[i, j] = a[i + dy, j + dx]``; outside: zero, or the nearest edge (``'edge'``)."""
    h, w = a.shape
    p = jnp.pad(a, 1, mode=mode)
    return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def canny(gray: jax.Array, sigma: float = 1.5, low: float = 0.1, high: float = 0.2) -> jax.Array:
    """Canny edges of ``float32[H, W]`` as ``float32[H, W]`` in {0, 1}.

    ``low`` and ``high`` are hysteresis thresholds as fractions of the largest gradient
    magnitude; weak edges (>= low) are kept where they connect to strong ones (>= high).
    """
    g = _blur(gray, sigma)
    # Sobel on edge-padded values: zero padding would make the canvas border an edge.
    sh = lambda dy, dx: _shift(g, dy, dx, "edge")
    gx = (sh(-1, 1) + 2 * sh(0, 1) + sh(1, 1)) - (sh(-1, -1) + 2 * sh(0, -1) + sh(1, -1))
    gy = (sh(1, -1) + 2 * sh(1, 0) + sh(1, 1)) - (sh(-1, -1) + 2 * sh(-1, 0) + sh(-1, 1))
    mag = jnp.hypot(gx, gy)
    # Gradient direction quantised to 0, 45, 90, 135 degrees; compare with both neighbours
    # along it (non-maximum suppression).
    sector = jnp.round(jnp.arctan2(gy, gx) / (jnp.pi / 4)).astype(jnp.int32) % 4
    keep = jnp.zeros(mag.shape, bool)
    for s, (dy, dx) in enumerate([(0, 1), (1, 1), (1, 0), (1, -1)]):
        peak = (mag >= _shift(mag, dy, dx)) & (mag >= _shift(mag, -dy, -dx))
        keep = keep | ((sector == s) & peak)
    nms = jnp.where(keep, mag, 0.0)
    top = jnp.maximum(mag.max(), 1e-12)
    weak, strong = nms >= low * top, nms >= high * top

    def grow(state):
        edges, _ = state
        near = edges
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near = near | _shift(edges, dy, dx)
        new = weak & near
        return new, jnp.any(new != edges)

    edges, _ = jax.lax.while_loop(lambda s: s[1], grow, (strong & weak, jnp.array(True)))
    return edges.astype(jnp.float32)


def num_warp_params(kind: str, grid: int) -> int:
    """Length P of one class's warp parameter vector."""
    if kind == "affine":
        return 6
    if kind == "polynomial":
        return 2 * len(_POLY_POWERS)
    if kind == "elastic":
        return 2 * grid * grid
    raise ConfigError(f"source.perturbation={kind!r}: must be one of {PERTURBATIONS}")


def sample_warps(key: jax.Array, num: int, kind: str, delta: float, grid: int = 4) -> jax.Array:
    """``float32[num, P]``: class l's warp parameters ~ U(-delta, delta), from (key, l).

    * affine: ``q' = (I + E) q + t``, E (4 entries) and t (2) perturbed;
    * polynomial: ``q' = q + sum_m c_m q^m`` over the 10 monomials of degree <= 3 per axis;
    * elastic: ``q' = q + D(q)``, D the cubic upsampling of a ``grid x grid``
      field of random displacements (a smooth, local warp).
    """
    p = num_warp_params(kind, grid)
    one = lambda i: jax.random.uniform(jax.random.fold_in(key, i), (p,), minval=-1.0, maxval=1.0)
    return delta * jax.vmap(one)(jnp.arange(num))


def _sample_points(kind: str, params: jax.Array, size: int, grid: int) -> jax.Array:
    """Source coordinates ``float32[size, size, 2]`` (row, col in pixels) of each output pixel."""
    q = jnp.linspace(-1.0, 1.0, size)
    qy, qx = jnp.meshgrid(-q, q, indexing="ij")  # row 0 at the top: y = +1
    if kind == "affine":
        a, b, c, d, e, f = params
        x, y = (1 + a) * qx + b * qy + e, c * qx + (1 + d) * qy + f
    elif kind == "polynomial":
        mono = jnp.stack([qx**i * qy**j for i, j in _POLY_POWERS], -1)  # [S, S, 10]
        cx, cy = params.reshape(2, -1)
        x, y = qx + mono @ cx, qy + mono @ cy
    else:
        field = params.reshape(grid, grid, 2)
        disp = jax.image.resize(field, (size, size, 2), "cubic")
        x, y = qx + disp[..., 0], qy + disp[..., 1]
    scale = (size - 1) / 2
    return jnp.stack([(1 - y) * scale, (x + 1) * scale], -1)


def bilinear(img: jax.Array, points: jax.Array) -> jax.Array:
    """Sample ``float32[H, W, C]`` at ``float32[..., 2]`` (row, col); zero outside."""
    h, w = img.shape[:2]
    r0, c0 = jnp.floor(points[..., 0]), jnp.floor(points[..., 1])
    fr, fc = points[..., 0] - r0, points[..., 1] - c0
    out = 0.0
    for dr, dc, wgt in [(0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc))]:
        out = out + _tap(img, r0 + dr, c0 + dc, h, w) * wgt[..., None]
    return out + _tap(img, r0 + 1, c0 + 1, h, w) * (fr * fc)[..., None]


def _tap(img, r, c, h, w):
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    v = img[jnp.clip(r, 0, h - 1).astype(jnp.int32), jnp.clip(c, 0, w - 1).astype(jnp.int32)]
    return jnp.where(inside[..., None], v, 0.0)


def warp(img: jax.Array, kind: str, params: jax.Array, grid: int = 4) -> jax.Array:
    """Warp a square ``float32[S, S, C]`` image by one class's parameters ``float32[P]``."""
    return bilinear(img, _sample_points(kind, params, img.shape[0], grid))


def base_image(
    rgb: np.ndarray,
    mode: str,
    size: int,
    sigma: float,
    low: float,
    high: float,
) -> jax.Array:
    """The unperturbed class image ``float32[size, size, 1 or 3]`` from a square RGB image.

    ``rgb`` may be larger than ``size`` (edges are found at its resolution, then
    area-downsampled, with lines kept at full intensity).
    """
    if mode not in MODES:
        raise ConfigError(f"source.mode={mode!r}: must be one of {MODES}")
    rgb = jnp.asarray(rgb)
    if mode == "edges":
        work = rgb.shape[0]
        img = jax.jit(canny, static_argnums=(1, 2, 3))(to_gray(rgb), sigma, low, high)[..., None]
        if work != size:
            # A 1-pixel line covers size/work of a downsampled pixel: rescale to full value.
            img = jnp.clip(jax.image.resize(img, (size, size, 1), "linear") * work / size, 0, 1)
        return img
    img = jax.image.resize(rgb, (size, size, 3), "linear") if rgb.shape[0] != size else rgb
    return to_gray(img)[..., None] if mode == "gray" else img
