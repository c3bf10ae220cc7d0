"""What every source shares: the :class:`Source` interface, the render options, and the
drawing of a fixed data set (one image per class, kept on the device as a ``uint8`` bank)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.ifs import IFS


@dataclasses.dataclass(frozen=True)
class Source:
    """A synthetic labelled image source.

    Attributes:
      name: source name as in the config.
      num_classes: number of labels.
      spec: the rendering options.
      draw: ``(arrays, labels int32[B], key) -> float32[B, H, W, C]``; jit-able, closing
        over no array (:meth:`render_labels` binds ``arrays``).
      systems: the per-class systems (``maps: float32[L, N, 6]``) where the source has them.
      info: facts about how the source was built (1p-frac: class redraw counts).
      random_labels: the drift control (``source.labels='random'``): every example's label is
        drawn uniformly and independently of its image, so the images carry no information
        about the labels and pre-training learns nothing but still takes its optimiser steps.
      arrays: what ``draw`` reads (a pytree: a bank, the class systems, an image, the data
        set's seed). A jit-compiled program takes them as an argument (:meth:`with_arrays`
        inside it) rather than closing over them: closed-over arrays are compiled into the
        program as constants, so every seed and data set would compile anew (and miss
        JAX's persistent cache), and a 262 MB bank would sit in the program.
      gray: every image's channels are equal (a gray drawing), so the augmentation
        resamples its crop from one channel (a third of the work) and copies it to the
        others.
    """

    name: str
    num_classes: int
    spec: render_lib.RenderSpec
    draw: Callable[[Any, jax.Array, jax.Array], jax.Array]
    systems: IFS | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    random_labels: bool = False
    arrays: Any = None
    gray: bool = False

    def render_labels(self, labels: jax.Array, key: jax.Array) -> jax.Array:
        """Images of classes ``labels: int32[B]`` drawn with ``key``: ``float32[B, H, W, C]``."""
        return self.draw(self.arrays, labels, key)

    def with_arrays(self, arrays: Any) -> Source:
        """This source reading ``arrays``: its own :attr:`arrays` as a jitted function's
        (traced) argument. They must be this source's (the other fields describe them)."""
        return dataclasses.replace(self, arrays=arrays)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images :meth:`batch` returns."""
        return (self.spec.image_size, self.spec.image_size, self.spec.channels)

    def batch(self, key: jax.Array, step: jax.Array | int, batch_size: int):
        """One batch: labels uniform over the classes, freshly rendered.

        Returns ``(images float32[B, H, W, C], labels int32[B])``; a pure function of
        (key, step), jit-able (``batch_size`` static).
        """
        k_label, k_render = jax.random.split(jax.random.fold_in(key, step))
        labels = jax.random.randint(k_label, (batch_size,), 0, self.num_classes)
        images = self.render_labels(labels, k_render)
        if self.random_labels:  # the same images, labels that say nothing about them
            k_noise = jax.random.fold_in(k_label, 1)
            labels = jax.random.randint(k_noise, (batch_size,), 0, self.num_classes)
        return images, labels


def spec_identity(spec: render_lib.RenderSpec) -> dict[str, Any]:
    """The fields of ``spec`` that decide its images (not how they are computed)."""
    fields = dataclasses.asdict(spec)
    del fields["rasterizer"]
    return fields


def render_spec(config: ml_collections.ConfigDict) -> render_lib.RenderSpec:
    """``config.render`` as a validated :class:`RenderSpec`."""
    fields = {f.name for f in dataclasses.fields(render_lib.RenderSpec)}
    given = dict(config.render)
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(f"render.{unknown[0]}: unknown field; known: {', '.join(sorted(fields))}")
    return render_lib.RenderSpec(**given).validate()


def check_range(cfg, name: str, lo=None, hi=None, prefix: str = "source") -> None:
    """A ConfigError naming ``<prefix>.<name>`` unless ``lo <= cfg[name] <= hi`` (and not NaN)."""
    v = cfg[name]
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):  # v != v: NaN
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{prefix}.{name}={v}: must be in {rng}")


# Classes drawn per call (1p-frac's rejection loop, banks): one compiled shape for any L >= 64.
CLASS_CHUNK = 64


def fixed_image_keys(patch_key: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-class image keys of the fixed data set: class l's patches depend on l alone."""
    return jax.vmap(lambda lab: jax.random.fold_in(patch_key, lab))(labels)


def render_fixed(
    spec: render_lib.RenderSpec,
    systems: IFS,
    labels: jax.Array,
    walk_key: jax.Array,
    patch_key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The fixed images of classes ``labels`` and their fill rates: one walk for every class
    (``walk_key``, as the official fixed seed) and class-keyed patches, so class l's image
    is a pure function of l. The one drawing that the class rejection tests and that
    training (or a bank) uses.

    Args:
      systems: the systems of these classes, ``maps: float32[B, N, 6]``.
      labels: their class indices ``int32[B]``, which key the patches.

    Returns:
      ``(images float32[B, H, W, C], fill float32[B])``.
    """
    return render_lib.render_with_fill(spec, systems, walk_key, fixed_image_keys(patch_key, labels))


def gray_drawing(spec: render_lib.RenderSpec) -> bool:
    """Whether a drawing at ``spec`` is gray (every channel equal): one gray level on black."""
    return not spec.color and spec.background == "black"


def render_bank(
    draw: Callable[[jax.Array], jax.Array], num: int, spec: render_lib.RenderSpec
) -> jax.Array:
    """``draw(labels) -> float32[B, H, W, C]`` for every label, as ``uint8[num, H, W, C']``
    on the device (C' = 1 for gray images: a 1000-image bank at 512 px is 262 MB)."""
    gray = gray_drawing(spec)
    to_u8 = lambda im: jnp.round((im[..., :1] if gray else im) * 255).astype(jnp.uint8)
    draw_u8 = jax.jit(lambda labels: to_u8(draw(labels)))
    chunk = min(CLASS_CHUNK, num)
    parts = []
    for i in range(0, num, chunk):
        ids = np.resize(np.arange(i, min(i + chunk, num)), chunk)
        parts.append(draw_u8(jnp.asarray(ids, jnp.int32))[: min(chunk, num - i)])
    return jnp.concatenate(parts)


def bank_draw(channels: int) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """The ``draw`` of a source of one fixed image per class, its arrays ``{'bank': ...}``
    (a :func:`render_bank` bank): the key is not used."""

    def draw(arrays, labels, key):
        del key  # one fixed image per class
        return bank_images(arrays["bank"], labels, channels)

    return draw


# uint8 -> float32 by table: XLA turns a division by 255 into a multiplication by its
# reciprocal, one ulp off the renderer's gray level 127/255.
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)


def bank_images(bank: jax.Array, labels: jax.Array, channels: int) -> jax.Array:
    """``float32[B, H, W, channels]`` from a :func:`render_bank` bank: bit-identical to the
    rendered images for gray fractals on black whose gray level is k/255 (the official
    127/255); other levels and colours are rounded to 8 bits (as the official PNGs)."""
    im = jnp.asarray(_LEVELS)[bank[labels]]
    return jnp.broadcast_to(im, im.shape[:3] + (channels,))
