"""The 1p-frac source as the official generator makes it: a fixed data set of L images,
per-class rejection of thin and diverging perturbations, the base's map probabilities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import onepfrac
from fractaljax import ifs as ifs_lib
from fractaljax import render, sources
from fractaljax.errors import ConfigError

SMALL = {
    "source.num_classes": 12,
    "source.diverge_steps": 5000,
    "render.image_size": 32,
    "render.walkers": 64,
    "render.steps": 16,
}


def small(**overrides):
    c = onepfrac.get_config("mini")
    c.update_from_flattened_dict({**SMALL, **overrides})
    return c


@pytest.fixture(scope="module")
def fixed():
    return sources.make(small())


def test_fixed_data_set_is_one_image_per_class(fixed):
    """A class's image is a pure function of the class: the same at every step and key."""
    labels = jnp.array([0, 5, 5, 11])
    a = np.asarray(fixed.render_labels(labels, jax.random.key(0)))
    b = np.asarray(fixed.render_labels(labels[::-1], jax.random.key(9)))
    np.testing.assert_array_equal(a, b[::-1])
    np.testing.assert_array_equal(a[1], a[2])
    assert not np.array_equal(a[0], a[1])  # classes differ
    images, labs = jax.jit(fixed.batch, static_argnums=2)(jax.random.key(1), 7, 32)
    ref = np.asarray(fixed.render_labels(jnp.arange(12), jax.random.key(0)))
    np.testing.assert_array_equal(np.asarray(images), ref[np.asarray(labs)])


def test_bank_holds_the_same_images(fixed):
    bank = sources.make(small(**{"source.bank": True}))
    labels = jnp.arange(12)
    np.testing.assert_array_equal(
        np.asarray(bank.render_labels(labels, jax.random.key(3))),
        np.asarray(fixed.render_labels(labels, jax.random.key(4))),
    )
    assert bank.gray and fixed.gray  # gray 127 on black: the augmentation crops one channel


def test_stream_draws_fresh_images_every_step(fixed):
    stream = sources.make(small(**{"source.data": "stream"}))
    np.testing.assert_array_equal(stream.systems.maps, fixed.systems.maps)  # same classes
    labels = jnp.zeros(2, jnp.int32)
    a = np.asarray(stream.render_labels(labels, jax.random.key(0)))
    b = np.asarray(stream.render_labels(labels, jax.random.key(1)))
    assert not np.array_equal(a, b)


def _long_walk_radius(systems, steps=100_000):
    u = jax.random.uniform(jax.random.key(42), (steps, 1))
    x, y = jax.jit(lambda s, u: render.walk(s, u, 0))(systems, u)
    r = np.maximum(np.abs(np.asarray(x)).max((0, 2)), np.abs(np.asarray(y)).max((0, 2)))
    return np.where(np.isfinite(r), r, np.inf)


def test_rejection_removes_diverging_classes_at_delta_0_2():
    """A base fractal a fifth of whose Delta-0.2 perturbations run away: with the official
    per-class rejection none of the kept classes does, and the redraws are counted."""
    base = ifs_lib.sample_sigma_factor(jax.random.key(8), 2, 3.5)
    raw = ifs_lib.perturb(jax.random.key(3), base, 48, 0.2)
    assert (_long_walk_radius(raw) > render.DIVERGED_RADIUS).sum() >= 3  # the test can fail
    spec = render.RenderSpec(image_size=64, walkers=256, steps=40, pad=2)
    keys = jax.random.split(jax.random.key(5), 2)
    systems, redraws, fills = sources.perturb_filled(
        jax.random.key(3), base, 48, 0.2, spec, keys[0], keys[1], 0.05, 50
    )
    assert redraws.sum() >= 3 and (fills > 0.05).all()
    assert (_long_walk_radius(systems) < render.DIVERGED_RADIUS).all()
    # Attempt 0 of every class is ifs.perturb's class: untouched classes are identical.
    kept = redraws == 0
    np.testing.assert_array_equal(np.asarray(systems.maps)[kept], np.asarray(raw.maps)[kept])


def test_thin_classes_are_redrawn_and_reported():
    src = sources.make(small(**{"source.delta": 0.2, "source.min_fill": 0.3}))
    assert src.info["redraws"] > 0 and src.info["classes_redrawn"] > 0
    assert src.info["min_class_fill"] > 0.3
    images = np.asarray(src.render_labels(jnp.arange(12), jax.random.key(0)))[..., 0] > 0
    assert images.mean((1, 2)).min() > 0.3


def test_classes_keep_the_base_probabilities(fixed):
    probs = np.asarray(fixed.systems.probs)
    np.testing.assert_array_equal(probs, np.broadcast_to(probs[0], probs.shape))
    other = sources.make(small(**{"source.recompute_probs": True})).systems
    assert np.ptp(np.asarray(other.probs)[:, 0]) > 1e-3
    np.testing.assert_allclose(
        np.asarray(other.probs), np.asarray(ifs_lib.map_probs(other.maps)), rtol=1e-5
    )


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"source.data": "files"}, "source.data"),
        ({"source.data": "stream", "source.bank": True}, "source.bank"),
        ({"source.class_max_tries": 0}, "source.class_max_tries"),
        ({"source.min_fill": 0.95, "source.max_tries": 2}, "source.min_fill"),
    ],
)
def test_bad_source_fields_name_themselves(overrides, field):
    with pytest.raises(ConfigError, match=field):
        sources.make(small(**overrides))
