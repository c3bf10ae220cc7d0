"""One real image and L warps of it (1p-frac's single-real-image study)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from fractaljax import keys as keys_lib
from fractaljax import real_image
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.sources.base import Source, check_range, render_spec


def make_real_image(config: ml_collections.ConfigDict, cache_dir: str | None = None) -> Source:
    """One real image, L classes = L random warps of it (1p-frac's single-real-image study).

    ``source.image_path`` (default: scikit-learn's bundled ``china.jpg``) is cropped to its
    centred square, turned into Canny edges (``source.mode='edges'``, the paper's best), a
    gray or an RGB image, and class l is warp l (``source.perturbation``: 'affine',
    'polynomial' or 'elastic', parameters ~ U(-delta, delta) in canvas units where the
    canvas spans [-1, 1]). Rendering is one bilinear resampling per image, on device.
    """
    del cache_dir
    src = config.source
    spec = render_spec(config)
    check_range(src, "num_classes", lo=1)
    check_range(src, "delta", lo=0.0, hi=1.0)
    check_range(src, "edge_sigma", lo=0.1, hi=20.0)
    check_range(src, "elastic_grid", lo=2, hi=64)
    if not 0.0 <= src.edge_low <= src.edge_high <= 1.0:
        raise ConfigError(
            f"source.edge_low={src.edge_low}, source.edge_high={src.edge_high}: need "
            "0 <= edge_low <= edge_high <= 1"
        )
    if src.mode == "rgb" and spec.channels != 3:
        raise ConfigError("source.mode='rgb' needs render.channels=3")
    # Edges are found at >= 256 px, where Canny's scale is meaningful, then downsampled.
    work = max(spec.image_size, src.edge_resolution)
    rgb = real_image.load_image(src.image_path, work)
    base = real_image.base_image(
        rgb, src.mode, spec.image_size, src.edge_sigma, src.edge_low, src.edge_high
    )
    if src.mode == "edges":
        base = base * spec.gray_level
    base = jnp.broadcast_to(base, base.shape[:2] + (spec.channels,))
    warps = real_image.sample_warps(
        keys_lib.stream(config.seed, "real_image"),
        src.num_classes,
        src.perturbation,
        src.delta,
        src.elastic_grid,
    )

    def draw(arrays, labels, key):
        one = lambda p: real_image.warp(arrays["base"], src.perturbation, p, src.elastic_grid)
        images = jax.vmap(one)(arrays["warps"][labels])
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(labels.shape[0]))
        return render_lib.add_background(spec, images, images.max(-1) > 0, keys)

    arrays = {"base": base, "warps": warps}
    gray = src.mode != "rgb" and spec.background == "black"  # edges: one gray level
    return Source("real_image", src.num_classes, spec, draw, arrays=arrays, gray=gray)
