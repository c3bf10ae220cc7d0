"""Radial contours (RCDB) and VisualAtom: the JAX sources against a plain-Python + PIL
transcription of the official drawing loops (fractaljax/reference_contours.py), the Perlin
noise against the C package's values, the class laws against the official sampler."""

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import radial_contour, visual_atom
from fractaljax import reference_contours as ref
from fractaljax import sources
from fractaljax.errors import ConfigError
from fractaljax.sources import contours

KINDS = {"radial_contour": radial_contour, "visual_atom": visual_atom}

# noise.pnoise1(x) from the `noise` 1.2.2 C extension (computed once with the package, which
# is not a dependency).
PNOISE1 = {
    0.3: 0.7577807903289795,
    1.7: 0.1460927575826645,
    2.5: 0.0,
    123.456: 0.8341333270072937,
    255.9: -0.30186882615089417,
    1023.5: -0.30000001192092896,
    1024.25: 0.6861328482627869,
    5000.1: 0.26550838351249695,
    9999.99: 0.003913498017936945,
}


def nth(d: dict, b: int) -> dict:
    """Image ``b`` of batched draws, as NumPy."""
    return {k: np.asarray(v[b]) for k, v in d.items()}


def config(kind: str, size: int = 512, **overrides):
    c = KINDS[kind].get_config("small")
    c.render.image_size = size
    c.update_from_flattened_dict(overrides)
    return c


def test_pnoise1_is_the_c_package():
    x = np.array(list(PNOISE1), np.float32)
    want = np.array(list(PNOISE1.values()), np.float32)
    np.testing.assert_allclose(np.asarray(contours.pnoise1(jnp.asarray(x))), want, atol=2e-6)
    np.testing.assert_allclose([ref.pnoise1(float(v)) for v in x], want, atol=2e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_images_are_the_official_drawing_of_the_same_draws(kind):
    """At the official 512 px, given the same random draws, the JAX source draws the pixels
    the official loop draws with PIL (the rare misses: float32 vertex sums against the
    official float64 ones, a truncation to the next pixel)."""
    c = config(kind, **{"source.stroke_budget": 4096})  # no thinning
    d = contours.batch_draws(
        c, contours.classes(c), jnp.arange(4), jax.random.split(jax.random.key(3), 4)
    )
    budget = contours.budget_of(c, 512)
    draw = jax.jit(jax.vmap(lambda x: contours.render_image(x, kind, c.source, 512, budget)))
    ours = np.asarray(jnp.round(draw(d) * 255)).astype(np.uint8)
    background = 255 if kind == "radial_contour" else 0
    for b in range(4):
        theirs = ref.official_image(nth(d, b), kind)
        ink = (theirs != background) | (ours[b] != background)
        assert ink.sum() > 1000, "the draw left the canvas empty: pick another key"
        assert (theirs[ink] == ours[b][ink]).mean() > 0.99, (b, (theirs != ours[b]).sum())
        assert (theirs == ours[b]).mean() > 0.999
    # A different class draws different pixels (the comparison can fail).
    other = ref.official_image(nth(d, 1), kind)
    assert (other != ours[0]).mean() > 0.01


@pytest.mark.parametrize("kind", list(KINDS))
def test_class_laws_are_the_official_ones(kind):
    """2,000 classes of the JAX source against 2,000 of the official sampler (Python's
    random in the official order): the same laws, field by field (two-sample KS)."""
    n = 2000
    c = config(kind, **{"source.num_classes": n})
    ours = jax.tree.map(np.asarray, contours.classes(c))
    rng = random.Random(1)
    theirs = [ref.official_class(rng, kind) for _ in range(n)]
    pairs = {
        "vertices": ours["vertices"],
        "contours": ours["contours"],
        "perlin": ours["perlin"],
        "line_width": ours["line_width"],
        "radius": ours["radius"],
        "ox": ours["oval"][:, 0],
        "cx": ours["centre"][:, 0],
    }
    if kind == "visual_atom":
        pairs.update(n1=ours["waves"][:, 0], n2=ours["waves"][:, 1])
        same = ours["waves"][:, 0] == ours["waves"][:, 1]
        assert np.all(ours["waves"][same, 0] == 0)  # n2 = n1 only when n1 = 0
    for name, x in pairs.items():
        y = np.array([t[name] for t in theirs], np.float64)
        p = stats.ks_2samp(x.astype(np.float64), y).pvalue
        assert p > 1e-3, (name, p, x.mean(), y.mean())
    # The test sees a wrong law: RCDB's vertices without the truncation to 3..200.
    if kind == "radial_contour":
        wrong = np.floor(np.random.default_rng(0).exponential(100, n))
        y = np.array([t["vertices"] for t in theirs])
        assert stats.ks_2samp(wrong, y).pvalue < 1e-3


@pytest.mark.parametrize("kind", list(KINDS))
def test_source_batches_in_the_train_step_shape(kind):
    c = config(kind, 32, **{"source.num_classes": 12, "source.instances": 4})
    src = sources.make(c)
    batch = jax.jit(src.batch, static_argnums=2)
    images, labels = batch(jax.random.key(0), 3, 8)
    assert images.shape == (8, 32, 32, 3) and images.dtype == jnp.float32
    assert labels.min() >= 0 and labels.max() < 12
    assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, batch(jax.random.key(0), 3, 8)[0])
    assert not np.array_equal(images, batch(jax.random.key(0), 4, 8)[0])
    background = 1.0 if kind == "radial_contour" else 0.0
    assert (np.asarray(images) != background).mean() > 0.001  # something drawn
    assert src.gray and (images == images[..., :1]).all()  # the augmentation crops one


def test_segments_ended_is_searchsorted_of_every_point():
    """The polyline drawer's lookup of each point's segment (one search per segment and a
    running sum) equals the per-point search it replaces, with empty segments, repeated
    positions, points before the first end and after the last."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        count = rng.integers(0, 4, 50) * (rng.random(50) < 0.7)  # many empty segments
        ends = np.cumsum(count).astype(np.int32)
        stride = rng.uniform(0.3, 3.0)
        pos = np.floor(np.arange(200) * stride).astype(np.int32) - rng.integers(0, 3)
        got = np.asarray(contours.segments_ended(jnp.asarray(ends), jnp.asarray(pos)))
        np.testing.assert_array_equal(got, np.searchsorted(ends, pos, side="right"))


def test_a_small_budget_thins_the_strokes_and_keeps_the_shape():
    c = config("visual_atom", 128)
    d = contours.batch_draws(
        c, contours.classes(c), jnp.arange(2), jax.random.split(jax.random.key(1), 2)
    )
    full = jax.vmap(lambda x: contours.render_image(x, "visual_atom", c.source, 128, 10**6))(d)
    thin = jax.vmap(lambda x: contours.render_image(x, "visual_atom", c.source, 128, 2000))(d)
    ink_full, ink_thin = np.asarray(full) > 0, np.asarray(thin) > 0
    assert ink_thin.sum() < ink_full.sum() and ink_thin.sum() > 0
    assert not (ink_thin & ~ink_full).any()  # thinning only leaves pixels out


def test_fixed_images_are_a_function_of_class_and_instance_and_the_bank_holds_them():
    c = config("radial_contour", 32, **{"source.num_classes": 3, "source.instances": 4})
    c.source.bank = False
    rendered = sources.make(c)
    labels = jnp.array([0, 1, 2, 0, 1, 2] * 4)
    inst = jax.random.randint(jax.random.key(9), labels.shape, 0, 4)
    keys = contours.instance_keys(c, labels, inst)
    # Every image drawn in the step is one of the 3 x 4 fixed images, the same each time.
    a = np.asarray(rendered.render_labels(labels, jax.random.key(1)))
    b = np.asarray(rendered.render_labels(labels, jax.random.key(2)))
    fixed = {
        im.tobytes()
        for im in np.asarray(
            jax.jit(lambda lab, ins: contours.fixed_images(c, lab, ins))(
                jnp.repeat(jnp.arange(3), 4), jnp.tile(jnp.arange(4), 3)
            )
        )
    }
    assert len(fixed) == 12
    assert all(im.tobytes() in fixed for im in np.concatenate([a, b]))
    assert not np.array_equal(a, b)  # other instances drawn
    assert keys.shape == labels.shape
    # The bank: bit-identical images for the same (class, instance).
    c.source.bank = True
    banked = sources.make(c)
    np.testing.assert_array_equal(banked.render_labels(labels, jax.random.key(1)), a)
    assert banked.info["bank_bytes"] == 12 * 32 * 32
    # 'stream': fresh images, none of them the fixed ones.
    c.source.data, c.source.bank = "stream", False
    s = np.asarray(sources.make(c).render_labels(labels, jax.random.key(1)))
    assert not any(im.tobytes() in fixed for im in s)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"source.data": "files"}, "source.data"),
        ({"source.instances": 0}, "source.instances"),
        ({"source.instances": 10**7}, "source.bank"),
        ({"source.waves": (5, 5)}, "source.waves"),
        ({"source.vertices": (2, 10)}, "source.vertices"),
        ({"source.contours": (5, 1)}, "source.contours"),
        ({"source.background": "gray"}, "source.background"),
        ({"source.stroke_budget": 0}, "source.stroke_budget"),
        ({"source.oval_rate": 0.5}, "source.oval_rate"),
    ],
)
def test_bad_contour_config_names_the_field(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        sources.make(config("visual_atom", 32, **overrides))


def test_a_contour_source_pretrains(tmp_path):
    """The train step traced with a contour source's bank (the CPU recipes' set-up)."""
    from test_train import TINY

    from fractaljax import train

    c = visual_atom.get_config("mini")
    c.update_from_flattened_dict({**TINY, "source.num_classes": 4, "total_steps": 6})
    c.source.instances = 2
    c.source.update(dict(vertices=(200, 260), contours=(1, 20)))  # a small bank, fast
    summary = train.train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 6 and np.isfinite(summary["last_loss"])
