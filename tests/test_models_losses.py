import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fractaljax.errors import ConfigError
from fractaljax.losses import lpce, smooth_labels
from fractaljax.models import vit


def _count(model, size):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
    return sum(x.size for x in jax.tree.leaves(shapes))


@pytest.mark.parametrize("variant,expected", [("Ti/16", 5_717_416), ("B/16", 86_567_656)])
def test_param_counts_match_timm(variant, expected):
    """timm's vit_tiny/base_patch16_224 with a 1000-class head."""
    assert _count(vit.make(variant, 1000, 224), 224) == expected


def test_forward_outputs_and_features():
    model = vit.make("test/4", 7, 16, drop_path=0.1)
    x = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    params = model.init(jax.random.key(1), x)["params"]
    logits, aux = model.apply({"params": params}, x)
    assert logits.shape == (3, 7)
    assert aux["pre_logits"].shape == (3, 32)
    assert len(aux["blocks"]) == 2 and aux["blocks"][0].shape == (3, 32)
    # Drop-path is active in training only and needs a dropout key.
    # (The head starts at zero, so compare the pre-logits.)
    train = lambda k: model.apply({"params": params}, x, train=True, rngs={"dropout": k})[1]  # noqa: E731
    a, b, again = (train(jax.random.key(k))["pre_logits"] for k in (2, 3, 2))
    assert a.shape == (3, 32)
    assert not np.allclose(a, b)  # another dropout key drops other paths
    np.testing.assert_array_equal(a, again)  # the same key, the same paths
    assert not np.allclose(a, aux["pre_logits"])  # training differs from evaluation
    with pytest.raises(Exception, match="dropout"):  # training without a key is an error
        model.apply({"params": params}, x, train=True)
    gap = vit.make("test/4", 0, 16, pool="gap")
    out, _ = gap.apply(gap.init(jax.random.key(1), x), x)
    assert out.shape == (3, 32)  # no head: pre-logits


@pytest.mark.parametrize("variant", ["huge/16", "Ti", "Ti/0", "Ti/x"])
def test_bad_variant(variant):
    with pytest.raises(ConfigError, match="model.variant"):
        vit.make(variant, 10, 32)


def test_patch_must_divide_image():
    with pytest.raises(ConfigError, match="does not divide"):
        vit.make("Ti/16", 10, 40)


def test_lpce_matches_hand_computation():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = jnp.array([0, 1])
    p = np.exp(np.asarray(logits))
    p /= p.sum(-1, keepdims=True)
    expected = -np.log(p[[0, 1], [0, 1]])
    np.testing.assert_allclose(np.asarray(lpce(logits, labels)), expected, rtol=1e-6)
    # Label smoothing 0.3 over 3 classes: targets 0.8 / 0.1 / 0.1.
    t = np.full((2, 3), 0.1)
    t[[0, 1], [0, 1]] = 0.8
    expected_ls = -(t * np.log(p)).sum(-1)
    got = lpce(logits, labels, label_smoothing=0.3)
    np.testing.assert_allclose(np.asarray(got), expected_ls, rtol=1e-6)
    # Soft targets are used as given, like optax.
    np.testing.assert_allclose(
        np.asarray(lpce(logits, jnp.asarray(t))),
        np.asarray(optax.softmax_cross_entropy(logits, jnp.asarray(t))),
    )


def test_lpce_uniform_logits_is_log_L():
    L = 1000
    loss = lpce(jnp.zeros((4, L)), jnp.arange(4))
    np.testing.assert_allclose(np.asarray(loss), np.log(L), rtol=1e-6)


def test_smooth_labels_mass():
    t = smooth_labels(jnp.array([0, 4]), 5, 0.1)
    np.testing.assert_allclose(np.asarray(t.sum(-1)), 1.0, rtol=1e-6)
    assert float(t[0, 0]) == pytest.approx(0.92)
