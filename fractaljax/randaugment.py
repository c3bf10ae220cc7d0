"""timm's RandAugment (``rand-m9-mstd0.5-inc1``) on device: per example, jit-able, vmappable.

The official 1p-frac pre-training passes ``auto_augment='rand-m9-mstd0.5-inc1'`` to
``timm.data.create_transform`` (with ``interpolation='bicubic'`` and the ImageNet mean). This
module reproduces ``timm.data.auto_augment.rand_augment_transform`` for that string on
``float32[H, W, C]`` images in [0, 1] (C = 1 or 3), one image per call; the caller vmaps over the
batch with per-example keys. Randomness comes only from the ``jax.random`` key.

What timm does, and what :func:`rand_augment` does:

* ``inc1`` picks the *increasing* op list (``_RAND_INCREASING_TRANSFORMS``, :data:`OP_NAMES`).
  Each of ``num_layers`` (n, default 2) layers picks an op uniformly, with replacement, and
  applies it with probability ``prob`` (0.5, ``rand_augment_ops``).
* Each application draws a level ``~ Normal(m, mstd)`` clipped to ``[0, mmax]`` (mmax 10 by
  default; ``mstd`` > 100, i.e. ``inf`` here, means ``Uniform(0, m)``), and a fresh random sign
  for the signed ops. With L = level / 10 (timm's ``_LEVEL_DENOM``), :func:`op_args` gives:

  ===================== =============================================  ==================
  op                    argument                                       at L = 0.9 (m9)
  ===================== =============================================  ==================
  AutoContrast          none (per channel, PIL ``ImageOps``)
  Equalize              none (256-bin histogram per channel)
  Invert                none
  Rotate                +-30 L degrees, counter-clockwise, about the    +-27 deg
                        image centre
  PosterizeIncreasing   keep 4 - int(4 L) bits                          1 bit
  SolarizeIncreasing    invert levels >= 256 - min(256, int(256 L))     >= 26
  SolarizeAdd           add min(128, int(110 L)) to levels < 128        +99
  Color/Contrast/       PIL ImageEnhance factor max(0.1, 1 +- 0.9 L)    0.19 or 1.81
  Brightness/Sharpness
  ShearX, ShearY        factor +-0.3 L (about the top-left corner)      +-0.27
  TranslateXRel/YRel    +-0.45 L of the width/height; a positive value  +-0.405 W or H
                        moves the content left/up
  ===================== =============================================  ==================

* Geometric ops fill uncovered pixels with ``img_mean``: ``min(255, round(255 * mean))`` per
  channel, i.e. 128 for ``fill=0.5`` and (124, 116, 104) for the ImageNet mean the official
  config uses.
* PIL's uint8 semantics are emulated on 8-bit levels (float32 holding 0..255): the LUTs of
  ``ImageOps.autocontrast/equalize/invert/posterize/solarize`` and timm's ``solarize_add``;
  ``Image.blend`` (float32, truncated and clipped) with the ``ImageEnhance`` degenerates: the
  'L' image ``(19595 R + 38470 G + 7471 B + 2**15) >> 16`` (Color), a constant at the mean of
  'L' rounded half up (Contrast), black (Brightness), ``ImageFilter.SMOOTH`` (kernel
  [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded, border rows and columns copied) (Sharpness);
  ``Image.transform(AFFINE)`` maps the output pixel centre (x + .5, y + .5) to the source, fills
  where that falls outside [0, W) x [0, H), and otherwise interpolates with clamped edges and
  truncates (bicubic: PIL's a = -1 kernel, clipped).

Op selection: every op is one of three families, an affine warp (5 ops), a per-channel lookup
table (6 ops) or a blend with a degenerate image (4 ops). A layer is a ``lax.cond`` (applied or
not) over a ``lax.switch`` of the three families, each family's expensive step written once
for all its ops (a switch over the 15 ops would, under ``vmap``, evaluate five warps instead
of one). Under ``vmap`` both become selects: every image runs all three families. Images
processed one at a time (``lax.map``, :func:`fractaljax.augment.augment_batch`'s
``per_image='map'``, the CPU default) run only the branch they draw: a skipped layer costs
nothing, and a third of the applied ones warp.

Deviations from timm and why:

* Input quantisation: timm works on a uint8 PIL image; here a layer that applies an op first
  rounds the image to 8-bit levels, ``round(255 x)`` (fractaljax renders float images). A layer
  that skips its op leaves the pixels untouched, so ``prob=0`` is the identity.
* Interpolation: ``interpolation='bilinear'`` (default, cheaper) or ``'bicubic'`` (what the
  official config passes). timm's ``'random'`` (a per-call choice of the two) is not supported.
* Precision: warps run in float32 where PIL uses double, so a warped pixel can differ by one
  level where the interpolated value is within ~1e-2 of an integer, and a sample point within
  ~1e-5 px of the image border can flip between edge pixel and fill. AutoContrast uses the
  exact ``floor((v - lo) * 255 / (hi - lo))``; PIL's double LUT is one level lower in 0.4 % of
  (lo, hi, v) triples, where the exact value is an integer. Level-to-argument products are
  computed as ``level * k / 10`` in float32 instead of ``(level / 10) * k`` in double: the same
  at every integer level, possibly different within an ulp of a step of ``int()``.
* Policy strings: :func:`parse_policy` is stricter than timm's parser, which skips tokens
  without a digit, reads ``t...`` as a transform-set name, lets later ``m``/``n``/``p`` win but
  earlier ``mstd``/``mmax`` win, and treats ``inc0`` as increasing (``bool('0')`` is True). Here
  every such case, an unknown key and a missing ``inc1`` (timm would use the non-increasing op
  list, which is not implemented) raise :class:`~fractaljax.errors.ConfigError`.
* Random streams: ``jax.random`` instead of Python's ``random`` and ``np.random``; the same
  distributions, different draws.

Versions: the official runs pin timm 0.4.12 and Pillow 9.1.0. This follows current timm, whose
only changes for this policy are the caps ``min(256, .)`` and ``min(128, .)`` on the Solarize
arguments, inert unless ``mmax`` > 10. PosterizeIncreasing keeps 0 bits (a black image) at level
10, as Pillow 9 does; recent Pillow (13 here) raises ValueError for 0 bits instead.

Why one file of this size: timm's operations, one function each in timm's order, so that
each can be compared with its timm counterpart line by line (tests/test_randaugment.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fractaljax.errors import ConfigError

# timm's _LEVEL_DENOM: magnitude m is level m / 10 of each op's full range.
LEVEL_DENOM = 10.0

OP_NAMES = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)

# Families of OP_NAMES, and each op's index within its family (see _apply_op_levels).
_WARP_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_LUT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
)
_BLEND_OPS = (
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
)
_WARP, _LUT, _BLEND = 0, 1, 2
_FAMILY = np.array(
    [_WARP if n in _WARP_OPS else _LUT if n in _LUT_OPS else _BLEND for n in OP_NAMES], np.int32
)
_INDEX = np.array(
    [
        (_WARP_OPS if f == _WARP else _LUT_OPS if f == _LUT else _BLEND_OPS).index(n)
        for n, f in zip(OP_NAMES, _FAMILY)
    ],
    np.int32,
)

INTERPOLATIONS = ("bilinear", "bicubic")


# ----------------------------------------------------------------------------------------------
# Level -> argument (timm's *_level_to_arg for the increasing list).


class OpArgs(NamedTuple):
    """Every op's argument at one level and sign (scalars; only the chosen op's is used)."""

    rotate_degrees: jax.Array  # float32, +-30 L
    posterize_bits: jax.Array  # int32, 4 - int(4 L)
    solarize_threshold: jax.Array  # int32, 256 - min(256, int(256 L))
    solarize_add: jax.Array  # int32, min(128, int(110 L))
    enhance_factor: jax.Array  # float32, max(0.1, 1 +- 0.9 L)
    shear: jax.Array  # float32, +-0.3 L
    translate_pct: jax.Array  # float32, +-0.45 L


def op_args(level: jax.Array | float, negate: jax.Array | bool) -> OpArgs:
    """timm's level-to-argument functions for the increasing op list.

    Args:
      level: scalar magnitude on timm's 0..10 scale (already sampled and clipped).
      negate: scalar bool, the random sign of the signed ops (timm's ``_randomly_negate``).
    """
    level = jnp.asarray(level, jnp.float32)
    sign = jnp.where(negate, -1.0, 1.0)
    # level * k / 10 rather than (level / 10) * k: exact at integer levels in float32.
    frac = lambda k: level * k / LEVEL_DENOM
    trunc = lambda v: jnp.floor(v).astype(jnp.int32)  # int() of a non-negative value
    return OpArgs(
        rotate_degrees=sign * frac(30.0),
        posterize_bits=4 - trunc(frac(4.0)),
        solarize_threshold=256 - jnp.minimum(256, trunc(frac(256.0))),
        solarize_add=jnp.minimum(128, trunc(frac(110.0))),
        enhance_factor=jnp.maximum(0.1, 1.0 + sign * frac(0.9)),
        shear=sign * frac(0.3),
        translate_pct=sign * frac(0.45),
    )


# ----------------------------------------------------------------------------------------------
# Point ops as per-channel lookup tables on 8-bit levels ("x8": float32[H, W, C] in 0..255).


def to_levels(img_HWC: jax.Array) -> jax.Array:
    """``float[H, W, C]`` in [0, 1] -> float32 8-bit levels 0..255 (what PIL would hold)."""
    return jnp.round(jnp.clip(img_HWC.astype(jnp.float32), 0.0, 1.0) * 255.0)


def histogram(x8: jax.Array) -> jax.Array:
    """``int32[C, 256]`` counts of each level per channel of ``x8: float32[H, W, C]``."""
    c = x8.shape[-1]
    # One bincount over channel-offset levels instead of C separate ones.
    idx = x8.astype(jnp.int32) + 256 * jnp.arange(c, dtype=jnp.int32)
    return jnp.bincount(idx.reshape(-1), length=256 * c).reshape(c, 256)


def apply_lut(x8: jax.Array, lut: jax.Array) -> jax.Array:
    """``out[h, w, c] = lut[c, x8[h, w, c]]``; ``lut: int[C, 256]`` or ``int[256]``."""
    c = x8.shape[-1]
    lut = jnp.broadcast_to(lut, (c, 256))
    return lut[jnp.arange(c), x8.astype(jnp.int32)].astype(jnp.float32)


_LEVELS = np.arange(256, dtype=np.int32)


def _last_nonzero(hist: jax.Array) -> jax.Array:
    return 255 - jnp.argmax(hist[:, ::-1] > 0, axis=-1)


def _autocontrast_lut(hist: jax.Array) -> jax.Array:
    # ImageOps.autocontrast(cutoff=0): stretch [lo, hi] to [0, 255]; flat channels unchanged.
    lo = jnp.argmax(hist > 0, axis=-1)[:, None]
    span = _last_nonzero(hist)[:, None] - lo
    lut = jnp.clip((_LEVELS - lo) * 255 // jnp.maximum(span, 1), 0, 255)
    return jnp.where(span > 0, lut, _LEVELS)


def _equalize_lut(hist: jax.Array) -> jax.Array:
    # ImageOps.equalize: step = (count - count of the last used level) // 255, and
    # lut[i] = (step // 2 + count below i) // step; step == 0 (which includes a single used
    # level) leaves the channel unchanged. PIL clips the table to 255 when applying it.
    top = jnp.take_along_axis(hist, _last_nonzero(hist)[:, None], axis=-1)
    step = (hist.sum(-1, keepdims=True) - top) // 255
    below = jnp.cumsum(hist, axis=-1) - hist
    lut = jnp.minimum((step // 2 + below) // jnp.maximum(step, 1), 255)
    return jnp.where(step > 0, lut, _LEVELS)


def _posterize_lut(bits: jax.Array) -> jax.Array:
    # Keep the top `bits` bits; timm returns the image for bits >= 8, and bits <= 0 is black.
    shift = 8 - jnp.clip(bits, 0, 8)
    return (_LEVELS >> shift) << shift


def _solarize_lut(threshold: jax.Array) -> jax.Array:
    return jnp.where(_LEVELS < threshold, _LEVELS, 255 - _LEVELS)


def _solarize_add_lut(add: jax.Array, threshold: int = 128) -> jax.Array:
    return jnp.where(_LEVELS < threshold, jnp.minimum(255, _LEVELS + add), _LEVELS)


def autocontrast(x8: jax.Array) -> jax.Array:
    """PIL ``ImageOps.autocontrast`` per channel, on 8-bit levels ``float32[H, W, C]``."""
    return apply_lut(x8, _autocontrast_lut(histogram(x8)))


def equalize(x8: jax.Array) -> jax.Array:
    """PIL ``ImageOps.equalize`` per channel, on 8-bit levels ``float32[H, W, C]``."""
    return apply_lut(x8, _equalize_lut(histogram(x8)))


def invert(x8: jax.Array) -> jax.Array:
    """PIL ``ImageOps.invert``: ``255 - v``."""
    return 255.0 - x8


def posterize(x8: jax.Array, bits: jax.Array | int) -> jax.Array:
    """PIL ``ImageOps.posterize``: keep the ``bits`` most significant bits of each level."""
    return apply_lut(x8, _posterize_lut(jnp.asarray(bits, jnp.int32)))


def solarize(x8: jax.Array, threshold: jax.Array | int) -> jax.Array:
    """PIL ``ImageOps.solarize``: invert levels ``>= threshold``."""
    return apply_lut(x8, _solarize_lut(jnp.asarray(threshold, jnp.int32)))


def solarize_add(x8: jax.Array, add: jax.Array | int, threshold: int = 128) -> jax.Array:
    """timm's ``solarize_add``: ``min(255, v + add)`` for levels ``< threshold``."""
    return apply_lut(x8, _solarize_add_lut(jnp.asarray(add, jnp.int32), threshold))


# ----------------------------------------------------------------------------------------------
# ImageEnhance: Image.blend(degenerate, image, factor).


def grayscale(x8: jax.Array) -> jax.Array:
    """PIL's RGB -> 'L' conversion (ITU-R 601 in 16-bit fixed point), ``[H, W, C] -> [H, W, 1]``.

    A one-channel image is already 'L'.
    """
    if x8.shape[-1] == 1:
        return x8
    v = x8.astype(jnp.int32)
    lum = (19595 * v[..., 0] + 38470 * v[..., 1] + 7471 * v[..., 2] + 0x8000) >> 16
    return lum[..., None].astype(jnp.float32)


def _gray_mean(x8: jax.Array) -> jax.Array:
    # int(mean + 0.5) of the 'L' image, in integers so that ties round as PIL's do.
    lum = grayscale(x8).astype(jnp.int32)
    n = lum.size
    return ((2 * lum.sum() + n) // (2 * n)).astype(jnp.float32)


def smooth(x8: jax.Array) -> jax.Array:
    """PIL ``ImageFilter.SMOOTH``: kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded.

    PIL's 3x3 filter copies the first and last rows and columns unchanged.
    """
    h, w, _ = x8.shape
    if h < 3 or w < 3:
        return x8
    # Separable 3x3 box sum plus 4 x centre; exact in float32 (at most 13 * 255).
    rows = x8[:, :-2] + x8[:, 1:-1] + x8[:, 2:]
    total = rows[:-2] + rows[1:-1] + rows[2:] + 4.0 * x8[1:-1, 1:-1]
    # Round half up; total / 13 is never within 1/26 of a half, far above float32 error.
    inner = jnp.pad(jnp.floor(total / 13.0 + 0.5), ((1, 1), (1, 1), (0, 0)))
    border = np.pad(
        np.zeros((h - 2, w - 2, 1), bool), ((1, 1), (1, 1), (0, 0)), constant_values=True
    )
    return jnp.where(border, x8, inner)


def blend(degenerate: jax.Array, x8: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ``Image.blend(degenerate, image, factor)`` on 8-bit levels: float32, truncated, and
    clipped to 0..255 (PIL clips only when extrapolating; interpolation stays in range)."""
    out = degenerate + jnp.asarray(factor, jnp.float32) * (x8 - degenerate)
    return jnp.clip(jnp.floor(out), 0.0, 255.0)


def color(x8: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ``ImageEnhance.Color``: blend with the grey ('L') image."""
    return blend(grayscale(x8), x8, factor)


def contrast(x8: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ``ImageEnhance.Contrast``: blend with the mean of the grey ('L') image."""
    return blend(_gray_mean(x8), x8, factor)


def brightness(x8: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    return blend(jnp.zeros((), jnp.float32), x8, factor)


def sharpness(x8: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image."""
    return blend(smooth(x8), x8, factor)


# ----------------------------------------------------------------------------------------------
# Affine warps: PIL Image.transform(AFFINE) and Image.rotate.


def rotate_matrix(degrees: jax.Array | float, h: int, w: int) -> jax.Array:
    """PIL ``Image.rotate``'s output -> input matrix ``(a, b, c, d, e, f)``, ``float32[6]``:
    counter-clockwise by ``degrees`` about the centre ``(w / 2, h / 2)``."""
    t = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    # PIL rounds cos and sin to 15 decimals so that right angles are exact; 2**-22 is the
    # float32 analogue (cos(90 deg) is -4e-8 in float32).
    cos, sin = (jnp.round(v * 2.0**22) / 2.0**22 for v in (jnp.cos(t), jnp.sin(t)))
    cx, cy = w / 2.0, h / 2.0
    return jnp.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy])


def shear_x_matrix(factor: jax.Array | float) -> jax.Array:
    """timm's ``shear_x``: ``x_in = x + factor * y`` (top-left origin)."""
    z, o = jnp.zeros(()), jnp.ones(())
    return jnp.stack([o, jnp.asarray(factor, jnp.float32), z, z, o, z])


def shear_y_matrix(factor: jax.Array | float) -> jax.Array:
    """timm's ``shear_y``: ``y_in = y + factor * x`` (top-left origin)."""
    z, o = jnp.zeros(()), jnp.ones(())
    return jnp.stack([o, z, z, jnp.asarray(factor, jnp.float32), o, z])


def translate_matrix(dx: jax.Array | float, dy: jax.Array | float) -> jax.Array:
    """timm's ``translate_*``: ``x_in = x + dx``, ``y_in = y + dy``; content moves by -(dx, dy)."""
    z, o = jnp.zeros(()), jnp.ones(())
    return jnp.stack([o, z, jnp.asarray(dx, jnp.float32), z, o, jnp.asarray(dy, jnp.float32)])


def _lerp(v: Sequence[jax.Array], t: jax.Array) -> jax.Array:
    # PIL's BILINEAR between taps (x, x + 1): v0 + (v1 - v0) * t.
    return v[0] + (v[1] - v[0]) * t


def _cubic(v: Sequence[jax.Array], t: jax.Array) -> jax.Array:
    # PIL's BICUBIC (a = -1) over taps (x - 1 .. x + 2).
    v0, v1, v2, v3 = v
    p2 = v2 - v0
    p3 = 2.0 * (v0 - v1) + v2 - v3
    p4 = v1 - v0 - v2 + v3
    return v1 + t * (p2 + t * (p3 + t * p4))


def affine(
    x8: jax.Array,
    matrix: jax.Array,
    fill8: jax.Array | float,
    interpolation: str = "bilinear",
) -> jax.Array:
    """PIL ``Image.transform(size, AFFINE, matrix, resample, fillcolor=fill8)`` on 8-bit levels.

    Args:
      x8: ``float32[H, W, C]`` levels 0..255.
      matrix: ``float32[6]`` ``(a, b, c, d, e, f)``: the output pixel centre ``(x, y)`` (pixel
        corners at integers) samples the input at ``(a x + b y + c, d x + e y + f)``.
      fill8: level (scalar or ``[C]``) where the sample falls outside the input.
      interpolation: ``'bilinear'`` or ``'bicubic'``.

    Returns:
      ``float32[H, W, C]`` levels.
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation={interpolation!r}: must be one of {INTERPOLATIONS}")
    h, w, _ = x8.shape
    a, b, c, d, e, f = (matrix[i] for i in range(6))
    yy, xx = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32) + 0.5,
        jnp.arange(w, dtype=jnp.float32) + 0.5,
        indexing="ij",
    )
    sx = a * xx + b * yy + c
    sy = d * xx + e * yy + f
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    sx, sy = sx - 0.5, sy - 0.5  # to pixel-index coordinates
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    tx, ty = (sx - x0)[..., None], (sy - y0)[..., None]
    taps, interp = (range(2), _lerp) if interpolation == "bilinear" else (range(-1, 3), _cubic)
    # Clamped neighbours (PIL repeats the edge pixels); one 1-D gather per tap is much faster
    # on CPU than a single gather of [H, W, k, k] patches.
    flat = x8.reshape(h * w, -1)
    cols = [jnp.clip(x0.astype(jnp.int32) + k, 0, w - 1) for k in taps]
    rows = [w * jnp.clip(y0.astype(jnp.int32) + k, 0, h - 1) for k in taps]
    along_x = [interp([jnp.take(flat, r + q, axis=0) for q in cols], tx) for r in rows]
    val = jnp.clip(interp(along_x, ty), 0.0, 255.0)
    return jnp.where(inside[..., None], jnp.floor(val), jnp.asarray(fill8, jnp.float32))


def rotate(x8, degrees, fill8, interpolation: str = "bilinear") -> jax.Array:
    """PIL ``Image.rotate(degrees)`` (counter-clockwise, same size) on 8-bit levels."""
    h, w, _ = x8.shape
    return affine(x8, rotate_matrix(degrees, h, w), fill8, interpolation)


# ----------------------------------------------------------------------------------------------
# One op, and RandAugment.


def _fill_levels(fill: float | Sequence[float], channels: int) -> np.ndarray:
    # timm's img_mean: min(255, round(255 * mean)) per channel (Python and NumPy both round
    # half to even, so 0.5 -> 128).
    mean = np.asarray(fill, np.float64)
    if mean.ndim > 1 or mean.size not in (1, channels):
        raise ConfigError(f"fill={fill!r}: must be a float or one value per channel ({channels})")
    return np.broadcast_to(np.minimum(255.0, np.round(255.0 * mean)), (channels,)).astype(
        np.float32
    )


def _pick(index: jax.Array, options: Sequence[jax.Array]) -> jax.Array:
    """``options[index]`` by a chain of selects (elementwise, so XLA fuses it)."""
    out = options[-1]
    for i in range(len(options) - 2, -1, -1):
        out = jnp.where(index == i, options[i], out)
    return out


def _apply_op_levels(x8, op, level, negate, fill8, interpolation):
    """Op ``OP_NAMES[op]`` at ``level`` on levels ``x8``: one branch per family (see the
    module docstring)."""
    h, w, _ = x8.shape
    args = op_args(level, negate)
    family, index = jnp.asarray(_FAMILY)[op], jnp.asarray(_INDEX)[op]

    def warp(x8):  # order of _WARP_OPS
        dx, dy = args.translate_pct * w, args.translate_pct * h
        matrices = jnp.stack(
            [
                rotate_matrix(args.rotate_degrees, h, w),
                shear_x_matrix(args.shear),
                shear_y_matrix(args.shear),
                translate_matrix(dx, 0.0),
                translate_matrix(0.0, dy),
            ]
        )
        return affine(x8, matrices[index], fill8, interpolation)

    def look_up(x8):  # order of _LUT_OPS
        hist = histogram(x8)
        per_channel = lambda lut: jnp.broadcast_to(lut, (x8.shape[-1], 256))
        luts = jnp.stack(
            [
                _autocontrast_lut(hist),
                _equalize_lut(hist),
                per_channel(255 - _LEVELS),
                per_channel(_posterize_lut(args.posterize_bits)),
                per_channel(_solarize_lut(args.solarize_threshold)),
                per_channel(_solarize_add_lut(args.solarize_add)),
            ]
        )
        return apply_lut(x8, luts[index])

    def blend_with(x8):  # order of _BLEND_OPS
        degenerate = _pick(index, [grayscale(x8), _gray_mean(x8), jnp.zeros(()), smooth(x8)])
        return blend(degenerate, x8, args.enhance_factor)

    return jax.lax.switch(family, [warp, look_up, blend_with], x8)


def sample_level(
    key: jax.Array,
    magnitude: jax.Array | float,
    magnitude_std: jax.Array | float,
    magnitude_max: jax.Array | float,
) -> jax.Array:
    """timm's per-application level: ``Normal(magnitude, magnitude_std)``, or
    ``Uniform(0, magnitude)`` when ``magnitude_std`` is ``inf``, clipped to ``[0, magnitude_max]``.
    A scalar float32; every argument may be traced."""
    k_normal, k_uniform = jax.random.split(key)
    std = jnp.asarray(magnitude_std, jnp.float32)
    normal = magnitude + jnp.where(jnp.isinf(std), 0.0, std) * jax.random.normal(k_normal, ())
    uniform = jax.random.uniform(k_uniform, (), minval=0.0, maxval=magnitude)
    return jnp.clip(jnp.where(jnp.isinf(std), uniform, normal), 0.0, magnitude_max)


def _check_image(img_HWC: jax.Array) -> None:
    if img_HWC.ndim != 3 or img_HWC.shape[-1] not in (1, 3):
        raise ValueError(f"image shape {img_HWC.shape}: expected [H, W, C] with C = 1 or 3")


def apply_op(
    img_HWC: jax.Array,
    op: jax.Array | int,
    level: jax.Array | float,
    negate: jax.Array | bool = False,
    *,
    fill: float | Sequence[float] = 0.5,
    interpolation: str = "bilinear",
) -> jax.Array:
    """Apply ``OP_NAMES[op]`` at magnitude ``level`` (timm's 0..10 scale) and sign ``negate``.

    Args:
      img_HWC: ``float[H, W, C]`` in [0, 1], C = 1 or 3; rounded to 8-bit levels first.
      op: scalar int index into :data:`OP_NAMES` (may be traced).
      level, negate: scalars, as for :func:`op_args`.
      fill: normalisation mean (float or per channel) that timm's geometric ops fill with.
      interpolation: ``'bilinear'`` or ``'bicubic'`` for the geometric ops.

    Returns:
      ``float32[H, W, C]`` in [0, 1], on the 1/255 grid.
    """
    _check_image(img_HWC)
    fill8 = _fill_levels(fill, img_HWC.shape[-1])
    out = _apply_op_levels(to_levels(img_HWC), op, level, negate, fill8, interpolation)
    return out / 255.0


def rand_augment(
    key: jax.Array,
    img_HWC: jax.Array,
    *,
    num_layers: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.5,
    magnitude_max: float = 10.0,
    prob: float = 0.5,
    fill: float | Sequence[float] = 0.5,
    interpolation: str = "bilinear",
) -> jax.Array:
    """timm RandAugment with the increasing op list, on one image.

    Defaults are ``rand-m9-mstd0.5-inc1``; ``rand_augment(key, img, **parse_policy(s))`` runs
    policy ``s``. ``fill`` and ``interpolation`` come from ``create_transform``'s mean and
    interpolation in timm (the official 1p-frac config: ImageNet mean, bicubic).

    Args:
      key: PRNG key for this image (vmap over per-example keys for a batch).
      img_HWC: ``float[H, W, C]`` in [0, 1], C = 1 or 3.
      num_layers: ops per image (static).
      magnitude: mean level m on timm's 0..10 scale.
      magnitude_std: std of the per-application level noise; ``inf`` draws ``U(0, m)``; 0 keeps
        m.
      magnitude_max: upper clip of the level.
      prob: probability that each chosen op is applied. ``magnitude*`` and ``prob`` may be
        traced (no recompilation when they change).
      fill: normalisation mean (float or per channel) for pixels the geometric ops uncover
        (static).
      interpolation: ``'bilinear'`` or ``'bicubic'`` (static).

    Returns:
      ``float32[H, W, C]`` in [0, 1]: the input where no op applied, else on the 1/255 grid.
    """
    _check_image(img_HWC)
    if num_layers < 0:
        raise ConfigError(f"num_layers={num_layers}: must be >= 0")
    if isinstance(magnitude_std, int | float) and not magnitude_std >= 0:
        raise ConfigError(f"magnitude_std={magnitude_std}: must be >= 0 (inf for uniform)")
    fill8 = _fill_levels(fill, img_HWC.shape[-1])
    img = img_HWC.astype(jnp.float32)
    if num_layers == 0:
        return img

    def layer(img, k):
        k_op, k_apply, k_level, k_sign = jax.random.split(k, 4)
        op = jax.random.randint(k_op, (), 0, len(OP_NAMES))
        level = sample_level(k_level, magnitude, magnitude_std, magnitude_max)
        negate = jax.random.bernoulli(k_sign)
        apply = lambda im: (
            _apply_op_levels(to_levels(im), op, level, negate, fill8, interpolation) / 255.0
        )
        # timm skips the op when random() > prob.
        applied = jax.random.uniform(k_apply, ()) < prob
        return jax.lax.cond(applied, apply, lambda im: im, img), None

    img, _ = jax.lax.scan(layer, img, jax.random.split(key, num_layers))
    return img


# ----------------------------------------------------------------------------------------------
# Policy strings.

_TOKEN = re.compile(r"([a-z]+)(\d.*)")
_CASTS = {"m": int, "n": int, "mmax": int, "mstd": float, "p": float, "inc": int}


def parse_policy(s: str) -> dict:
    """Parse a timm RandAugment string such as ``'rand-m9-mstd0.5-inc1'``.

    Tokens after ``rand`` (any order, each at most once): ``m`` int magnitude (default 10),
    ``n`` int layers (2), ``mstd`` float magnitude std (0; > 100 means uniform, ``inf``),
    ``mmax`` int level clip (10), ``p`` float op probability (0.5), and ``inc1``, required.

    Returns:
      ``dict(num_layers, magnitude, magnitude_std, magnitude_max, prob)``, keyword arguments
      for :func:`rand_augment`.

    Raises:
      ConfigError: naming the first bad token.
    """

    def bad(token: str, why: str) -> ConfigError:
        return ConfigError(f"augment policy {s!r}: token {token!r}: {why}")

    if not isinstance(s, str):
        raise ConfigError(f"augment policy {s!r}: must be a string like 'rand-m9-mstd0.5-inc1'")
    head, *tokens = s.split("-")
    if head != "rand":
        raise bad(head, "must start with 'rand' (only RandAugment is implemented)")
    values = {}
    for token in tokens:
        match = _TOKEN.fullmatch(token)
        if match is None or match.group(1) not in _CASTS:
            raise bad(token, f"expected one of {sorted(_CASTS)} followed by a number")
        key, text = match.groups()
        if key in values:
            raise bad(token, f"'{key}' given twice")
        try:
            value = _CASTS[key](text)
        except ValueError:
            raise bad(token, f"'{text}' is not a valid {_CASTS[key].__name__}") from None
        values[key] = value
    if "inc" not in values:
        raise ConfigError(
            f"augment policy {s!r}: missing 'inc1': without it timm uses the non-increasing op "
            "list, which is not implemented"
        )
    if values["inc"] != 1:
        raise bad(
            f"inc{values['inc']}",
            "only the increasing op list (inc1) is implemented; timm reads any inc value, "
            "even inc0, as increasing",
        )
    out = dict(
        num_layers=values.get("n", 2),
        magnitude=float(values.get("m", LEVEL_DENOM)),
        magnitude_std=values.get("mstd", 0.0),
        magnitude_max=float(values.get("mmax", LEVEL_DENOM)),
        prob=values.get("p", 0.5),
    )
    if out["magnitude_std"] > 100:
        out["magnitude_std"] = math.inf  # timm: uniform sampling in [0, m]
    for key, ok in (
        ("mstd", out["magnitude_std"] >= 0),
        ("mmax", out["magnitude_max"] > 0),
        ("p", 0.0 <= out["prob"] <= 1.0),
    ):
        if not ok:
            raise bad(f"{key}{values[key]}", "out of range (mstd >= 0, mmax > 0, 0 <= p <= 1)")
    return out
