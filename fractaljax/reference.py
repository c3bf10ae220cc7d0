"""A plain NumPy chaos game: the reference that the JAX renderer is checked and timed against.

It follows the official 1p-frac / FractalDB generator: one sequential walk per image from
(0, 0), the map drawn with the system's probabilities at every step, the points rescaled to
the canvas by their min/max with a pad, each point drawn as a 3x3 patch with its own random
non-empty mask, gray on black. Deliberately unvectorised over the walk, as the original: it
is the baseline of ``benchmarks/render_bench.py`` and the ground truth of the tests.
"""

from __future__ import annotations

import numpy as np


def walk(
    maps: np.ndarray,
    probs: np.ndarray,
    num_points: int,
    rng: np.random.Generator,
    burn_in: int = 20,
) -> np.ndarray:
    """One sequential chaos-game walk, ``float64[num_points, 2]``.

    Args:
      maps: ``[N, 6]`` rows ``(a, b, c, d, e, f)``: x' = a x + b y + e, y' = c x + d y + f.
      probs: ``[N]`` map probabilities.
      num_points: recorded points.
      rng: NumPy generator.
      burn_in: unrecorded leading steps.
    """
    choice = rng.choice(len(probs), size=burn_in + num_points, p=probs / probs.sum())
    pts = np.empty((num_points, 2))
    x = y = 0.0
    for i, k in enumerate(choice):
        a, b, c, d, e, f = maps[k]
        x, y = a * x + b * y + e, c * x + d * y + f
        if i >= burn_in:
            pts[i - burn_in] = x, y
    return pts


def rasterize(pts: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Points -> ``(rows, cols)`` int pixel coordinates, each axis rescaled by its min/max."""
    span = size - 1 - 2 * pad
    lo, hi = pts.min(0), pts.max(0)
    rng = np.where(hi > lo, hi - lo, 1.0)
    t = np.where(hi > lo, (pts - lo) / rng, 0.5)
    px = np.clip(np.round(pad + t * span), 0, size - 1).astype(np.int64)
    return (size - 1) - px[:, 1], px[:, 0]


def render(
    maps: np.ndarray,
    probs: np.ndarray,
    *,
    size: int = 224,
    num_points: int = 100_000,
    pad: int = 3,
    patch: bool = True,
    gray_level: float = 127 / 255,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One image ``float32[size, size]`` in [0, 1]."""
    rng = np.random.default_rng(0) if rng is None else rng
    rows, cols = rasterize(walk(maps, probs, num_points, rng), size, pad)
    canvas = np.zeros((size + 2, size + 2), bool)
    if not patch:
        canvas[rows + 1, cols + 1] = True
    else:
        masks = rng.integers(1, 512, size=len(rows))  # random non-empty 9-bit mask per point
        for k in range(9):
            dy, dx = k // 3 - 1, k % 3 - 1
            on = (masks >> k) & 1 == 1
            canvas[rows[on] + 1 + dy, cols[on] + 1 + dx] = True
    return canvas[1:-1, 1:-1].astype(np.float32) * gray_level
