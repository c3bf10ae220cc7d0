"""Claims the results rest on, each pinned by a test that fails when the claim breaks:
fine-tuning starts from the pre-trained weights, the random-init baseline is random, the
optimiser clips, the chaos game picks maps with the right probabilities, and drop-path
acts only in training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats
from test_train import tiny_config

from configs import finetune_mini
from fractaljax import augment, finetune, real_image, render, run_dir, train
from fractaljax.finetune import Splits
from fractaljax.ifs import IFS
from fractaljax.models import vit


def _digits_like(n=64, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return Splits(x, y, x[:16], y[:16], 10, "noise")


def test_finetuning_starts_from_the_pretrained_weights(tmp_path):
    pre_dir = tmp_path / "pre"
    train.train_and_evaluate(tiny_config(total_steps=5), str(pre_dir))
    pre, _, pretrained = run_dir.load(str(pre_dir))
    ft = finetune_mini.get_config()
    ft.total_steps, ft.checkpoint_every, ft.log_every, ft.batch_size = 1, 1, 1, 8
    ft.eval_batch_size, ft.downstream.num_labels = 8, 32
    # One step at the warm-up's first learning rate, 0: the saved weights are the start.
    finetune.finetune(ft, pre, pretrained, str(tmp_path / "ft"), data=_digits_like())
    _, _, tuned = run_dir.load(str(tmp_path / "ft"))
    assert tuned["head"]["kernel"].shape[-1] == 10  # the downstream classes
    assert pretrained["head"]["kernel"].shape[-1] == pre.source.num_classes
    for name in pretrained:
        if name != "head":
            for a, b in zip(jax.tree.leaves(pretrained[name]), jax.tree.leaves(tuned[name])):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    # The random-init baseline is not the pre-trained model.
    _, rand = finetune.random_init(pre, seed=pre.seed)
    body = lambda p: [v for k, v in sorted(p.items()) if k != "head"]
    diff = [
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(body(rand)), jax.tree.leaves(body(pretrained)))
    ]
    assert max(diff) > 1e-4


def test_gradient_clipping_bounds_the_update():
    c = tiny_config(**{"optim.grad_clip_norm": 1.0, "optim.weight_decay": 0.0})
    c.optim.name, c.optim.momentum, c.warmup_steps = "sgd", 0.0, 0
    schedule = train.learning_rate(c)
    params = {"w": jnp.zeros(100)}
    grads = {"w": jnp.full(100, 10.0)}  # norm 100
    for clip, bound in ((1.0, 1.0), (0.0, 100.0)):
        c.optim.grad_clip_norm = clip
        tx = train.make_optimizer(c, schedule)
        state = tx.init(params)
        _, state = tx.update(grads, state, params)  # step 0: lr 0
        upd, _ = tx.update(grads, state, params)
        lr = float(schedule(1))
        np.testing.assert_allclose(float(optax.global_norm(upd)), lr * bound, rtol=1e-5)


def _constant_maps(probs):
    """Map k sends every point to (k, 0): the walk's x is the sequence of chosen maps."""
    n = len(probs)
    maps = np.zeros((1, n, 6), np.float32)
    maps[0, :, 4] = np.arange(n)
    return IFS(jnp.asarray(maps), jnp.asarray([probs], jnp.float32))


def test_maps_are_chosen_with_their_probabilities():
    probs = [0.5, 0.3, 0.2, 0.0]
    u = jax.random.uniform(jax.random.key(0), (50_000, 4))
    x, _ = render.walk(_constant_maps(probs), u, burn_in=0, start="origin")
    chosen = np.asarray(x).astype(int).ravel()
    counts = np.bincount(chosen, minlength=4)
    assert counts[3] == 0  # a zero-probability map is never chosen
    p = stats.chisquare(counts[:3], np.asarray(probs[:3]) * counts.sum()).pvalue
    assert p > 1e-3, (counts, p)
    # A renderer choosing uniformly would fail the same test by far.
    uniform = np.full(3, counts.sum() / 3)
    assert stats.chisquare(counts[:3], uniform).pvalue < 1e-12


def test_walk_equals_a_sequential_numpy_walk():
    rng = np.random.default_rng(0)
    maps = rng.uniform(-0.6, 0.6, (1, 3, 6)).astype(np.float32)
    probs = np.array([[0.2, 0.5, 0.3]], np.float32)
    u = rng.uniform(size=(2000, 2)).astype(np.float32)
    x, y = render.walk(IFS(jnp.asarray(maps), jnp.asarray(probs)), jnp.asarray(u), 0, "origin")
    cum = np.cumsum(probs[0])
    for w in range(2):
        px, py = 0.0, 0.0
        for t in range(len(u)):
            k = int(np.argmax(u[t, w] <= cum))  # the official rule: first j with u <= cum[j]
            a, b, c, d, e, f = maps[0, k]
            px, py = a * px + b * py + e, c * px + d * py + f
            np.testing.assert_allclose([x[t, 0, w], y[t, 0, w]], [px, py], atol=1e-5)


def test_drop_path_acts_in_training_only():
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
    model = vit.make("test/4", 7, 16, drop_path=0.5)
    params = model.init(jax.random.key(1), x)["params"]

    def pre_logits(m, train, key):
        return m.apply({"params": params}, x, train=train, rngs={"dropout": key})[1]["pre_logits"]

    k1, k2 = jax.random.key(2), jax.random.key(3)
    np.testing.assert_array_equal(pre_logits(model, False, k1), pre_logits(model, False, k2))
    assert float(jnp.abs(pre_logits(model, True, k1) - pre_logits(model, True, k2)).max()) > 1e-3
    no_drop = vit.make("test/4", 7, 16, drop_path=0.0)
    np.testing.assert_allclose(
        pre_logits(no_drop, True, k1), pre_logits(model, False, k1), rtol=1e-6, atol=1e-6
    )


def test_flip_axes_and_jitter_are_what_they_say():
    img = jax.random.uniform(jax.random.key(0), (6, 5, 3))  # H != W: a swap would show
    key = jax.random.key(1)
    np.testing.assert_array_equal(augment.flip(key, img, 1.0, 0.0), img[:, ::-1])  # left-right
    np.testing.assert_array_equal(augment.flip(key, img, 0.0, 1.0), img[::-1])  # top-bottom
    np.testing.assert_array_equal(augment.flip(key, img, 0.0, 0.0), img)
    np.testing.assert_allclose(augment.color_jitter(key, img, 0.0), img, atol=1e-6)
    # Strength s draws the brightness factor from U(1 - s, 1 + s): a gray image stays gray,
    # scaled by that factor (contrast of a constant image and saturation of gray are no-ops).
    gray = jnp.full((4, 4, 3), 0.4)
    out = augment.color_jitter(key, gray, 0.5)
    factor = float(out[0, 0, 0]) / 0.4
    assert 0.5 <= factor <= 1.5 and abs(factor - 1) > 1e-3
    np.testing.assert_allclose(out, gray * factor, rtol=1e-5)


def test_affine_warp_translation_direction_and_units():
    """Canvas units: [-1, 1] spans size - 1 pixels. The warp samples the source at q' = q + t,
    so t_x = +1 px moves the content one column left and t_y = +1 px one row down."""
    img = jax.random.uniform(jax.random.key(0), (8, 8, 1))
    px = 2 / 7
    left = real_image.warp(img, "affine", jnp.array([0, 0, 0, 0, px, 0.0]))
    np.testing.assert_allclose(left[:, :-1], img[:, 1:], atol=1e-5)
    np.testing.assert_allclose(left[:, -1], 0.0, atol=1e-5)  # sampled outside: zero
    down = real_image.warp(img, "affine", jnp.array([0, 0, 0, 0, 0, px]))
    np.testing.assert_allclose(down[1:], img[:-1], atol=1e-5)
    np.testing.assert_allclose(down[0], 0.0, atol=1e-5)
