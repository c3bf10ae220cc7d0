"""Dead leaves: the JAX painter against the official loop drawn with OpenCV
(fractaljax/reference_dead_leaves.py) given the same draws, the radius law against the
official sampler, the source's fixed images, bad fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import dead_leaves
from fractaljax import reference_dead_leaves as ref
from fractaljax import sources
from fractaljax.errors import ConfigError
from fractaljax.sources import dead_leaves as dl

cv2 = pytest.importorskip(
    "cv2", reason="opencv-python-headless (the dev extra) draws the reference"
)


def agreement(mode: str, res: int, keys: range) -> list[float]:
    c = dead_leaves.get_config("small")
    c.source.shape_mode = mode
    # Compiled once for all keys, as in the source, instead of op by op for each.
    draw = jax.jit(lambda key: dl.draw_shapes(key, c.source, res))
    paint = jax.jit(lambda d: jnp.round(dl.paint(d, res) * 255))
    out = []
    for k in keys:
        d = draw(jax.random.key(k))
        ours = np.asarray(paint(d)).astype(np.uint8)
        theirs = ref.official_image(jax.tree.map(np.asarray, d), res)
        out.append(float((ours == theirs).all(-1).mean()))
    return out


def test_squares_are_the_official_drawing_pixel_for_pixel():
    """The script's default shape: every pixel equal to OpenCV's, the stop rule included."""
    assert agreement("square", 64, range(3)) == [1.0, 1.0, 1.0]


def test_mixed_shapes_agree_with_opencv_but_for_edge_pixels():
    """Discs, rotated squares, rectangles, triangles, quadrilaterals: the outline is
    fillPoly's 8-connected line only approximately, and one pixel can move the stop."""
    a = agreement("mixed", 64, range(4))
    assert np.mean(a) > 0.95 and min(a) > 0.8, a


def test_radius_law_is_the_official_one():
    c = dead_leaves.get_config("small")
    ours = np.asarray(dl.draw_shapes(jax.random.key(0), c.source, 128)["radius"])
    theirs = ref.official_radii(np.random.default_rng(0), 3000, 128)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    # A wrong law (sigma 2 instead of 3) is seen.
    r, cdf = dl.radius_cdf(2.0)
    u = np.random.default_rng(1).uniform(size=3000)
    bad = np.maximum((r[np.abs(cdf[None] - u[:, None]).argmin(1)] * 128).astype(int), 1)
    assert stats.ks_2samp(bad, theirs).pvalue < 1e-3


def test_polygon_corner_laws_are_the_official_ones():
    """Triangles and quadrilaterals: sorted independent angles on the circle (L60-65); the
    mean area of a unit triangle is the official sampler's (0.477 for 3 independent angles;
    the 3 smallest of 4 would give 0.39)."""
    c = dead_leaves.get_config("small")
    c.source.shape_mode, c.source.max_shapes = "triangle", 20000
    d = jax.tree.map(np.asarray, dl.draw_shapes(jax.random.key(2), c.source, 128))
    rng = np.random.default_rng(0)

    def area(p):  # shoelace, [N, k, 2]
        x, y = p[..., 0], p[..., 1]
        return 0.5 * np.abs((x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1))

    ang = np.sort(rng.uniform(0, 2 * np.pi, (20000, 3)), axis=1)
    official = area(np.stack([np.cos(ang), np.sin(ang)], -1)).mean()
    big = d["radius"] >= 20  # integer corners: the area is close to r^2 times the unit one
    rel = (d["corners"][big, :3] - d["centre"][big, None]).astype(float)
    ours = (area(rel) / d["radius"][big] ** 2).mean()
    assert abs(official - 0.477) < 0.01 and abs(ours - official) < 0.04, (ours, official)


def test_one_fixed_image_per_class():
    c = dead_leaves.get_config("mini")
    c.source.num_classes, c.source.max_shapes = 5, 600
    src = sources.make(c)
    images, labels = jax.jit(src.batch, static_argnums=2)(jax.random.key(0), 3, 16)
    assert images.shape == (16, 32, 32, 3) and labels.max() < 5
    for lab in range(5):
        same = np.asarray(images)[np.asarray(labels) == lab]
        assert all(np.array_equal(same[0], im) for im in same)
    again = np.asarray(src.render_labels(jnp.arange(5), jax.random.key(7)))
    assert len({im.tobytes() for im in again}) == 5  # five different images
    assert again.std() > 0.1  # coloured shapes, not a flat canvas
    assert not src.gray  # every channel is cropped


@pytest.mark.parametrize(
    "field,value",
    [("shape_mode", "hexagon"), ("max_shapes", 0), ("sigma", -1.0), ("num_classes", 0)],
)
def test_bad_dead_leaves_config_names_the_field(field, value):
    c = dead_leaves.get_config("mini")
    c.source[field] = value
    with pytest.raises(ConfigError, match=f"source.{field}"):
        sources.make(c)
