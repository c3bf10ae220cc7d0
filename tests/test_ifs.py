import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fractaljax import ifs as ifs_lib


def _svs(maps):
    lin = np.asarray(maps)[..., :4].reshape(maps.shape[:-1] + (2, 2))
    return np.linalg.svd(lin, compute_uv=False)  # [..., N, 2], descending


@pytest.mark.parametrize("n_maps,sigma", [(1, 2.0), (2, 3.5), (2, 5.0), (3, 6.0), (5, 8.0)])
def test_sigma_factor_constraint(n_maps, sigma):
    keys = jax.random.split(jax.random.key(0), 200)
    systems = jax.vmap(lambda k: ifs_lib.sample_sigma_factor(k, n_maps, sigma))(keys)
    assert systems.maps.shape == (200, n_maps, 6) and systems.maps.dtype == jnp.float32
    s = _svs(systems.maps)
    assert (s <= 1 + 1e-5).all() and (s >= -1e-6).all()
    total = (s[..., 0] + 2 * s[..., 1]).sum(-1)
    assert (total >= sigma - 0.1 - 1e-4).all() and (total <= sigma + 0.1 + 1e-4).all()
    # The target is spread over the whole window, not pinned to one end.
    assert total.std() > 0.02
    t = np.asarray(systems.maps)[..., 4:]
    assert (np.abs(t) <= 1).all()


def test_probabilities_proportional_to_det():
    systems = jax.vmap(lambda k: ifs_lib.sample_sigma_factor(k, 3, 4.0))(
        jax.random.split(jax.random.key(1), 50)
    )
    p = np.asarray(systems.probs)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    d = np.abs(np.asarray(ifs_lib.det(systems.maps)))
    np.testing.assert_allclose(p, d / d.sum(-1, keepdims=True), rtol=1e-4, atol=1e-7)


def test_map_probs_degenerate_is_uniform_over_valid():
    maps = jnp.zeros((3, 6))
    p = ifs_lib.map_probs(maps, jnp.array([True, True, False]))
    np.testing.assert_allclose(np.asarray(p), [0.5, 0.5, 0.0])
    p = ifs_lib.map_probs(jnp.full((2, 6), jnp.nan))
    np.testing.assert_allclose(np.asarray(p), [0.5, 0.5])


def test_uniform_sampler_pads_with_zero_probability():
    sys_ = jax.jit(lambda k, n: ifs_lib.sample_uniform(k, n, 8))(jax.random.key(2), 3)
    assert sys_.maps.shape == (8, 6)
    assert (np.asarray(sys_.maps)[3:] == 0).all()
    p = np.asarray(sys_.probs)
    assert (p[3:] == 0).all() and (p[:3] > 0).all()
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("delta", [0.001, 0.1, 0.5])
def test_perturbation_statistics(delta):
    base = ifs_lib.sample_sigma_factor(jax.random.key(3), 2, 3.5)
    classes = ifs_lib.perturb(jax.random.key(4), base, 2000, delta)
    assert classes.maps.shape == (2000, 2, 6)
    ratio = np.asarray(classes.maps) / np.asarray(base.maps)[None]
    assert ratio.min() >= 1 - delta - 1e-6 and ratio.max() <= 1 + delta + 1e-6
    # Mean 1, and uniform spread: std of U(1 - d, 1 + d) is d / sqrt(3).
    assert abs(ratio.mean() - 1) < 0.01 * delta + 1e-6
    np.testing.assert_allclose(ratio.std(), delta / np.sqrt(3), rtol=0.05)
    np.testing.assert_allclose(np.asarray(classes.probs).sum(-1), 1.0, rtol=1e-5)


def test_perturbation_class_depends_only_on_key_and_index():
    base = ifs_lib.sample_sigma_factor(jax.random.key(3), 2, 3.5)
    a = ifs_lib.perturb(jax.random.key(5), base, 10, 0.1)
    b = ifs_lib.perturb(jax.random.key(5), base, 1000, 0.1)
    np.testing.assert_array_equal(np.asarray(a.maps), np.asarray(b.maps[:10]))


def test_delta_zero_gives_identical_classes():
    base = ifs_lib.sample_sigma_factor(jax.random.key(3), 2, 3.5)
    classes = ifs_lib.perturb(jax.random.key(5), base, 4, 0.0)
    np.testing.assert_array_equal(np.asarray(classes.maps), np.broadcast_to(base.maps, (4, 2, 6)))


@pytest.mark.parametrize("sigma,n_maps", [(0.05, 2), (6.1, 2), (-1.0, 2), (3.1, 1), (1.0, 0)])
def test_check_sigma_rejects(sigma, n_maps):
    with pytest.raises(ifs_lib.ConfigError, match="source"):
        ifs_lib.check_sigma(sigma, n_maps)


def test_sigma_at_its_maximum_gives_near_isometries():
    ifs_lib.check_sigma(6.0, 2)  # the paper's largest sigma for N = 2
    base = ifs_lib.sample_sigma_factor(jax.random.key(0), 2, 6.0)
    svs = np.linalg.svd(np.asarray(base.maps[:, :4]).reshape(2, 2, 2), compute_uv=False)
    assert np.all(np.isfinite(svs)) and svs.sum() + svs[:, 1].sum() >= 5.9 - 1e-4
    assert svs.max() <= 1.0 + 1e-5
