"""The official RCDB and VisualAtom drawing loops, transcribed in plain Python with PIL: the
reference the JAX sources (:mod:`fractaljax.sources.contours`) are checked against.

``official_image`` follows rcdb_render/make_rcdb.py (L84-116) and visual_atomic_renderer/
render_VisualAtom.py (L85-114) statement by statement: the vertex lists, the per-contour
noise of every vertex and axis, the in-place radial moves in float64, and one
``ImageDraw.line(..., width=1)`` per segment. It takes its random draws (the ``U(0, 1e4)``
noise inputs, the gray levels, the class and image geometry) from the caller, so that given
the JAX source's draws the two must draw the same pixels; ``official_class`` draws a class
with Python's ``random`` in the official order, to compare the laws. ``pnoise1`` transcribes
``noise`` 1.2.2's C ``noise1`` (one octave, repeat 1024, base 0), which the official code
calls as ``noise.pnoise1``. Nothing here runs in training.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

from fractaljax.sources.contours import OFFICIAL_SIZE, PERLIN_PERM

_PERM = [int(p) for p in PERLIN_PERM]


def pnoise1(x: float, repeat: int = 1024, base: int = 0) -> float:
    """``noise.pnoise1(x)``: _perlin.c ``noise1`` (its ``grad1`` gives -1, not -g, for
    hashes with bit 8 set)."""
    fl = math.floor(x)
    i = int(fl) % repeat
    ii = (i + 1) % repeat
    i, ii = (i & 255) + base, (ii & 255) + base
    t = x - fl
    fade = t * t * t * (t * (t * 6 - 15) + 10)

    def grad1(h: int, d: float) -> float:
        return (-1.0 if h & 8 else (h & 7) + 1.0) * d

    a, b = grad1(_PERM[i], t), grad1(_PERM[ii], t - 1)
    return (a + fade * (b - a)) * 0.4


def official_class(rng: random.Random, kind: str) -> dict[str, float]:
    """One class's draws in the official order and laws (RCDB: make_rcdb.py L53-66 with
    exe_rcdb_1k.sh's defaults; VisualAtom: render_VisualAtom.py L60-77 with
    make_VisualAtom.sh's perlin_min 0, line_width 0.1, radius_min 10)."""
    if kind == "radial_contour":
        while True:
            v = int(rng.expovariate(1 / 100))
            if 2 < v <= 200:
                break
        c = dict(vertices=v, contours=rng.randint(1, 200), perlin=rng.uniform(0, 4))
        c.update(line_width=rng.uniform(0.0, 0.1), radius=rng.randint(0, 100))
        n1 = n2 = 0
    else:
        c = dict(vertices=rng.randint(200, 1000), contours=rng.randint(1, 200))
        c.update(perlin=rng.uniform(0, 4), line_width=rng.uniform(0.0, 0.1))
        c.update(radius=rng.randint(10, 60))
        n1 = rng.randint(0, 20)
        while True:
            n2 = rng.randint(0, 20)
            if n1 != n2 or n1 == 0:
                break
    start = 400 if kind == "radial_contour" else 512
    c.update(ox=rng.uniform(1, 2), oy=rng.uniform(1, 2))
    c.update(cy=(OFFICIAL_SIZE + rng.randint(-start, start)) / 2)
    c.update(cx=(OFFICIAL_SIZE + rng.randint(-start, start)) / 2, n1=n1, n2=n2)
    return c


def official_image(d: dict, kind: str, background: str | None = None) -> np.ndarray:
    """The official drawing of one image from the draws ``d`` (the keys of
    :func:`fractaljax.sources.contours.image_draws`, as NumPy), on the official 512 px
    canvas: ``uint8[512, 512]`` (the official RGB image's one gray channel)."""
    v_num, k_num = int(d["vertices"]), int(d["contours"])
    radius, (ox, oy), (cx, cy) = float(d["radius"]), d["oval"], d["centre"]
    c, lw = float(d["perlin"]), float(d["line_width"])
    n1, n2 = (float(w) for w in d["waves"])
    background = background or ("white" if kind == "radial_contour" else "black")
    im = Image.new("L", (OFFICIAL_SIZE, OFFICIAL_SIZE), 255 if background == "white" else 0)
    draw = ImageDraw.Draw(im)
    angle = (math.pi * 2) / v_num
    # RCDB adds the centre when it draws, VisualAtom when it starts: the same sums.
    vx = [math.cos(angle * v) * radius * float(ox) for v in range(v_num)]
    vy = [math.sin(angle * v) * radius * float(oy) for v in range(v_num)]
    vx.append(vx[0])
    vy.append(vy[0])
    for k in range(k_num):
        gray = int(d["gray"][k])

        def noise(u: float, v: int) -> float:
            p = pnoise1(float(u))
            if kind == "radial_contour":
                return p * c * 2 - c
            wave = 0.5 * math.sin(angle * v * n1) + 0.5 * math.sin(angle * v * n2)
            return p * c - c - wave

        nx = [noise(d["u"][0, k, v], v) for v in range(v_num)]
        ny = [noise(d["u"][1, k, v], v) for v in range(v_num)]
        for v in range(v_num):
            vx[v] -= math.cos(angle * v) * (nx[v] - lw)
            vy[v] -= math.sin(angle * v) * (ny[v] - lw)
        vx[v_num], vy[v_num] = vx[0], vy[0]
        for i in range(v_num):
            xy = (vx[i] + cx, vy[i] + cy, vx[i + 1] + cx, vy[i + 1] + cy)
            draw.line(tuple(float(t) for t in xy), fill=gray, width=1)
    return np.asarray(im)


def official_draws(rng: random.Random, kind: str) -> dict:
    """The draws of one official image, the first of a fresh class: :func:`official_class`,
    then per contour its gray level and the V + V noise inputs, in the official order (the
    keys of :func:`fractaljax.sources.contours.image_draws`)."""
    c = official_class(rng, kind)
    v_num, k_num = c["vertices"], c["contours"]
    gray, u = np.zeros(k_num), np.zeros((2, k_num, v_num))
    for k in range(k_num):
        gray[k] = rng.randint(0, 256) if kind == "radial_contour" else rng.randint(0, 255)
        u[0, k] = [rng.uniform(0, 10000) for _ in range(v_num)]
        u[1, k] = [rng.uniform(0, 10000) for _ in range(v_num)]
    return dict(
        vertices=v_num,
        contours=k_num,
        perlin=c["perlin"],
        line_width=c["line_width"],
        radius=c["radius"],
        oval=np.array([c["ox"], c["oy"]]),
        centre=np.array([c["cx"], c["cy"]]),
        waves=np.array([c["n1"], c["n2"]]),
        gray=np.minimum(gray, 255),  # PIL clips RCDB's 256
        u=u,
    )
