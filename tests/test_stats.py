"""Statistics over seeds, and the paired random-init baseline."""

import math

import jax
import numpy as np
from test_train import tiny_config

from fractaljax import finetune, sharding, stats, train


def test_t_interval_matches_the_textbook_value():
    mean, lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    # sd 1, se 1/sqrt(3), t(0.975, 2) = 4.3027
    assert mean == 2.0
    np.testing.assert_allclose(
        [lo, hi], [2 - 4.3027 / math.sqrt(3), 2 + 4.3027 / math.sqrt(3)], rtol=1e-4
    )
    assert math.isnan(stats.t_interval([1.0])[1])
    assert stats.mean_sd([5.0]) == (5.0, 0.0, 1)


def test_summary_pairs_each_seed_with_its_own_random_init():
    rows = [
        {"init": "pretrained", "value": 0.1, "seed": s, "acc": a}
        for s, a in zip((0, 1, 2), (0.80, 0.70, 0.90))
    ] + [
        {"init": "random", "value": "", "seed": s, "acc": a}
        for s, a in zip((0, 1, 2), (0.75, 0.65, 0.85))
    ]
    out = {s["value"]: s for s in stats.summarize(rows, ["acc"])}
    pre, rnd = out[0.1], out["random init"]
    assert pre["seeds"] == 3 and rnd["seeds"] == 3
    np.testing.assert_allclose(pre["acc_mean"], 0.8)
    np.testing.assert_allclose(pre["acc_sd"], 0.1)
    # Every seed is exactly +0.05 over its own random init: a zero-width interval, although
    # the unpaired spreads (sd 0.1 each) overlap widely.
    np.testing.assert_allclose([pre["acc_diff"], pre["acc_diff_lo"], pre["acc_diff_hi"]], 0.05)
    assert pre["acc_diff_seeds"] == 3 and "acc_diff" not in rnd


def test_summary_pairs_with_a_control_when_asked():
    rows = (
        [
            {"init": "pretrained", "value": 0.1, "seed": s, "acc": a}
            for s, a in zip((0, 1, 2), (0.80, 0.70, 0.90))
        ]
        + [
            {"init": "control", "value": "drift", "seed": s, "acc": a}
            for s, a in zip((0, 1, 2), (0.60, 0.55, 0.70))
        ]
        + [{"init": "random", "value": "", "seed": s, "acc": 0.75} for s in (0, 1, 2)]
    )
    out = {s["value"]: s for s in stats.summarize(rows, ["acc"], baseline="drift")}
    # Paired seed by seed with the control: +0.20, +0.15, +0.20.
    np.testing.assert_allclose(out[0.1]["acc_diff"], np.mean([0.2, 0.15, 0.2]))
    np.testing.assert_allclose(out["random init"]["acc_diff"], np.mean([0.15, 0.2, 0.05]))
    assert "acc_diff" not in out["drift"]
    # The default baseline stays the random init.
    out = {s["value"]: s for s in stats.summarize(rows, ["acc"])}
    np.testing.assert_allclose(out["drift"]["acc_diff"], np.mean([-0.15, -0.2, -0.05]))


def test_random_init_baseline_is_the_pretraining_starting_point():
    c = tiny_config(seed=3)
    model = train.make_model(c, c.source.num_classes)
    tx = train.make_optimizer(c, train.learning_rate(c))
    start = train.init_state(c, model, tx, sharding.data_mesh(), (16, 16, 3)).params
    _, same = finetune.random_init(c, seed=3)
    _, other = finetune.random_init(c, seed=4)
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(same)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(other))
    )
