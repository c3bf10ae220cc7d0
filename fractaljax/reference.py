"""A plain NumPy rendering that follows the official 1p-frac / FractalDB generator line by
line: the ground truth of the tests and the baseline of ``benchmarks/render_bench.py``.

The official ``ifs_function`` (``1p-frac_generater/src/ifs_function.py``):

* ``calculate``: ``np.random.seed(100)``; ``rand = np.random.random(iteration)``; the walk
  starts at (0, 0), that point included, and takes ``iteration - 1`` steps, step i applying
  the first map j with ``rand[i] <= cumsum(p)[j]``;
* ``__rescale``: NaN points are dropped (with the 100 before the first NaN), each axis is
  shifted to start at 0 when its minimum is negative and mapped by
  ``uint16(v / (max - min) * (size - 2 pad) + pad)`` (truncation);
* ``draw_patch``: for every point in walk order, ``Image.paste`` of a 3x3 patch at
  ``(x + 1, y + 1)`` whose cell (i, j) is gray 127 times bit ``3 i + j`` of
  ``'{:09b}'.format(random.randrange(1, 512))`` (most significant first): zero cells are
  pasted too, so the last point covering a pixel decides it; then a top-bottom flip; the
  fill test is the fraction of channel values > 1, which must exceed the threshold.

Deliberately unvectorised over the points, as the original.
"""

from __future__ import annotations

import numpy as np

OFFICIAL_SEED = 100  # the fixed np.random.seed of ifs_function.calculate


def official_uniforms(num_points: int, seed: int = OFFICIAL_SEED) -> np.ndarray:
    """The official map-choice uniforms: ``np.random.seed(100); np.random.random(n)``."""
    return np.random.RandomState(seed).random_sample(num_points)


def walk(
    maps: np.ndarray, probs: np.ndarray, num_points: int, u: np.ndarray | None = None
) -> np.ndarray:
    """The official walk, ``float64[num_points, 2]``: (0, 0) first, then ``num_points - 1``
    steps, step i applying the first map j with ``u[i] <= cumsum(probs)[j]``.

    Args:
      maps: ``[N, 6]`` rows ``(a, b, c, d, e, f)``: x' = a x + b y + e, y' = c x + d y + f.
      probs: ``[N]`` map probabilities (the official code uses them as given).
      num_points: recorded points, the origin included.
      u: ``[>= num_points - 1]`` uniforms; default :func:`official_uniforms`.
    """
    u = official_uniforms(num_points) if u is None else u
    cum = np.cumsum(probs)
    pts = np.empty((num_points, 2))
    x = y = 0.0
    pts[0] = x, y
    for i in range(num_points - 1):
        hit = np.nonzero(u[i] <= cum)[0]
        if len(hit):  # the official loop keeps the previous point when no map matches
            a, b, c, d, e, f = maps[hit[0]]
            x, y = a * x + b * y + e, c * x + d * y + f
        pts[i + 1] = x, y
    return pts


def rescale(pts: np.ndarray, size: int = 512, pad: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The official ``__rescale``: points -> integer ``(x, y)`` before the flip, float64."""
    xs, ys = pts[:, 0].copy(), pts[:, 1].copy()
    for axis in (0, 1):  # x first, then y of what is left, as the official code
        bad = np.nonzero(np.isnan((xs, ys)[axis]))[0]
        if len(bad):
            drop = np.append(np.arange(max(bad[0] - 100, 0), bad[0]), bad)
            xs, ys = np.delete(xs, drop), np.delete(ys, drop)
    if xs.min() < 0:
        xs -= xs.min()
    if ys.min() < 0:
        ys -= ys.min()
    with np.errstate(divide="ignore", invalid="ignore"):
        px = xs / (xs.max() - xs.min()) * float(size - 2 * pad) + float(pad)
        py = ys / (ys.max() - ys.min()) * float(size - 2 * pad) + float(pad)
    return px.astype(np.uint16).astype(np.int64), py.astype(np.uint16).astype(np.int64)


def paste(
    px: np.ndarray, py: np.ndarray, masks: np.ndarray, size: int = 512, patch: str = "paste"
) -> np.ndarray:
    """Draw points ``(px, py)`` (before the flip, as :func:`rescale` gives them) and flip.

    Args:
      masks: ``int[num_points]`` in [1, 511], one per point (``patch='paste'``).
      patch: ``'paste'``: the official ``draw_patch``, a literal loop of 3x3 pastes in walk
        order, zero cells included, clipped at the canvas edge as PIL does; ``'none'``: the
        official ``draw_point`` (one pixel per point).

    Returns:
      ``bool[size, size]``, row 0 at the top (after the official top-bottom flip).
    """
    canvas = np.zeros((size, size), bool)
    if patch == "none":
        canvas[py, px] = True
        return canvas[::-1]
    cells = np.array([[(m >> (8 - k)) & 1 for k in range(9)] for m in range(512)], bool)
    cells = cells.reshape(512, 3, 3)
    for x, y, m in zip(px, py, masks):
        r0, c0 = y + 1, x + 1
        r1, c1 = min(r0 + 3, size), min(c0 + 3, size)
        if r0 < size and c0 < size:
            canvas[r0:r1, c0:c1] = cells[m, : r1 - r0, : c1 - c0]
    return canvas[::-1]


def render(
    maps: np.ndarray,
    probs: np.ndarray,
    *,
    size: int = 512,
    num_points: int = 100_000,
    pad: int = 6,
    patch: str = "paste",
    gray_level: float = 127 / 255,
    rng: np.random.Generator | None = None,
    u: np.ndarray | None = None,
) -> np.ndarray:
    """One official image ``float32[size, size]`` in [0, 1] (one channel of the RGB PNG).

    The masks are drawn from ``rng`` (the official code uses Python's ``random``);
    ``u`` defaults to the official fixed uniforms.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    px, py = rescale(walk(maps, probs, num_points, u), size, pad)
    masks = rng.integers(1, 512, size=len(px))
    return paste(px, py, masks, size, patch).astype(np.float32) * gray_level


def lit_neighbour_share(lit: np.ndarray) -> float:
    """Mean share of a lit pixel's 8 neighbours that are lit (the texture statistic: about
    0.44-0.49 for the official speckled patches at 512 px, 0.86-0.92 for OR-ed masks).

    Args:
      lit: ``bool[..., H, W]``.
    """
    p = np.pad(lit, [(0, 0)] * (lit.ndim - 2) + [(1, 1), (1, 1)])
    h, w = lit.shape[-2:]
    n = sum(
        p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w].astype(np.int32)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dy, dx) != (0, 0)
    )
    return float(n[lit].mean() / 8) if lit.any() else 0.0
