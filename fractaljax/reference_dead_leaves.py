"""The official dead-leaves loop (mbaradad/learning_with_noise,
generate_datasets/dead_leaves/generate_dataset.py, ``dead_leaves`` L9-84) with OpenCV, given
the shapes' draws: the reference :mod:`fractaljax.sources.dead_leaves` is checked against.
Needs ``opencv-python-headless`` (the dev extra); nothing here runs in training."""

from __future__ import annotations

import numpy as np

from fractaljax.sources.dead_leaves import SHAPES, radius_cdf


def official_image(d: dict, res: int) -> np.ndarray:
    """``uint8[res, res, 3]``: the shapes of ``d`` (the keys of
    :func:`fractaljax.sources.dead_leaves.draw_shapes`, as NumPy) painted in order with
    ``cv2.circle`` / ``cv2.fillPoly`` until no pixel is black (L25-73)."""
    import cv2

    img = np.zeros((res, res, 3), dtype=np.uint8)
    for i in range(len(d["kind"])):
        color = tuple(int(c) for c in d["color"][i])
        if SHAPES[int(d["kind"][i])] == "circle":
            centre = (int(d["centre"][i][0]), int(d["centre"][i][1]))
            img = cv2.circle(img, centre, radius=int(d["radius"][i]), color=color, thickness=-1)
        else:
            corners = np.asarray(d["corners"][i], dtype=np.int32)
            if SHAPES[int(d["kind"][i])] == "triangle":
                corners = corners[:3]
            img = cv2.fillPoly(img, corners[None], color=color)
        if (img.sum(-1) == 0).sum() == 0:
            break
    return img


def official_radii(rng: np.random.Generator, n: int, res: int, sigma: float = 3.0) -> np.ndarray:
    """``n`` radii drawn as the official loop draws them (L35-37)."""
    r_list, r_dist = radius_cdf(sigma)
    out = np.empty(n, np.int64)
    for j in range(n):
        r_i = np.argmin(np.abs(r_dist - rng.uniform(0, 1)))
        out[j] = max(int(r_list[r_i] * res), 1)
    return out
