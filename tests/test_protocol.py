"""The pieces of a protocol that can show the paper's effect: validation splits, learning
rates chosen on them, the drift control, accuracy on redrawn classes, controls in sweeps."""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from test_train import tiny_config

from configs import finetune_mini, finetune_small, onepfrac, real_image
from fractaljax import finetune as ft_lib
from fractaljax import sources
from fractaljax.errors import ConfigError
from fractaljax.evals import task as evals_task

ROOT = pathlib.Path(__file__).resolve().parent.parent


def digits_config(data_dir: str, val_size: int = 200) -> ml_collections.ConfigDict:
    ft = finetune_mini.get_config()
    ft.downstream.dataset = "digits"
    ft.downstream.data_dir = data_dir
    ft.downstream.val_size = val_size
    return ft


def test_validation_split_is_held_out_and_nested_subsets_stay(data_dir):
    ft = digits_config(data_dir)
    with_val = ft_lib.load_downstream(ft, 8, 1, 0)
    assert with_val.has_val and len(with_val.y_val) == 200
    assert len(with_val.y_train) == 1297 - 200
    # No validation image is a training image (digits has no exact duplicates across the
    # two sets' first few hundred, so compare the pixels).
    train_set = {x.tobytes() for x in np.asarray(with_val.x_train)}
    assert not any(x.tobytes() in train_set for x in np.asarray(with_val.x_val))
    # Without a validation split the training subset is what it always was (stored points).
    ft.downstream.val_size = 0
    without = ft_lib.load_downstream(ft, 8, 1, 300)
    assert not without.has_val
    np.testing.assert_array_equal(without.y_train, with_val.y_train[:300])


def test_bad_validation_size_names_the_field(data_dir):
    with pytest.raises(ConfigError, match="downstream.val_size"):
        ft_lib.load_downstream(digits_config(data_dir, val_size=5000), 8, 1, 0)
    # Asking for more training images than the split has left gives all of them.
    data = ft_lib.load_downstream(digits_config(data_dir, val_size=1000), 8, 1, 500)
    assert len(data.y_train) == 297 and len(data.y_val) == 1000


def test_learning_rate_is_chosen_on_validation_not_test(data_dir, tmp_path, monkeypatch):
    ft = digits_config(data_dir)
    ft.optim.lr_grid = (0.01, 0.1, 1.0)
    data = ft_lib.load_downstream(ft, 8, 1, 0)
    # Each learning rate's runs score differently on validation and test: the chosen one
    # must be the validation's best even where the test disagrees.
    scores = {0.01: (0.5, 0.9), 0.1: (0.8, 0.1), 1.0: (0.7, 0.95)}  # lr: (val, test)
    seen = []

    def fake_finetune(c, pre, init, workdir, data):
        seen.append((c.optim.lr, workdir))
        val, test = scores[c.optim.lr]
        return {"val_accuracy": val, "test_accuracy": test}

    monkeypatch.setattr(ft_lib, "finetune", fake_finetune)
    run = ft_lib.finetune_selected(ft, None, None, str(tmp_path / "ft"), data)
    assert run["lr"] == 0.1 and run["test_accuracy"] == 0.1 and run["val_accuracy"] == 0.8
    assert run["val_by_lr"] == {lr: v for lr, (v, _) in scores.items()}
    assert [w for _, w in seen] == [str(tmp_path / f"ft_lr{lr:g}") for lr in (0.01, 0.1, 1)]
    # A grid without a validation split has nothing to choose on.
    ft.downstream.val_size = 0
    with pytest.raises(ConfigError, match="val_size"):
        ft_lib.finetune_selected(ft, None, None, str(tmp_path), ft_lib.load_downstream(ft, 8, 1, 0))


def test_evaluate_transfer_reports_validation_metrics(data_dir, tmp_path):
    ft = digits_config(data_dir)
    ft.total_steps, ft.log_every, ft.checkpoint_every, ft.batch_size = 6, 3, 6, 16
    ft.optim.lr_grid = (0.1, 0.5)
    pre = tiny_config()
    data = ft_lib.load_downstream(ft, 16, 3, 300)
    model, params = ft_lib.random_init(pre, seed=0)
    row = ft_lib.evaluate_transfer(model, params, None, data, ft, pre, str(tmp_path), 100)
    for tag in ("", "_100labels"):
        for m in ("finetune", "probe_best", "probe_last"):
            assert 0.0 <= row[f"{m}{tag}_val_top1"] <= 1.0, row
        assert row[f"finetune{tag}_lr"] in (0.1, 0.5)
        best = max((0.1, 0.5), key=lambda lr: row[f"finetune{tag}_lr{lr:g}_val_top1"])
        assert row[f"finetune{tag}_lr"] == best
    assert row["probe_best_layer"] in ("block0", "block1", "pre_logits")
    assert 0.3 < row["probe_best_val_top1"]  # digits are learnable; chance is 0.1


def test_random_labels_keep_the_images_and_carry_no_information():
    c = tiny_config()
    true = sources.make(c)
    c.source.labels = "random"
    noise = sources.make(c)
    key = jax.random.key(0)
    x_true, y_true = true.batch(key, 3, 512)
    x_noise, y_noise = noise.batch(key, 3, 512)
    np.testing.assert_array_equal(np.asarray(x_true), np.asarray(x_noise))
    y_true, y_noise = np.asarray(y_true), np.asarray(y_noise)
    assert (y_noise != y_true).mean() > 0.5  # chance agreement is 1/L
    assert y_noise.min() >= 0 and y_noise.max() < c.source.num_classes
    # The label of an image says nothing about the image: class counts are uniform-ish
    # whatever class drew the image.
    table = np.zeros((c.source.num_classes,) * 2)
    np.add.at(table, (y_true, y_noise), 1)
    assert table.max() < 0.2 * len(y_true)
    c.source.labels = "shuffled"
    with pytest.raises(ConfigError, match="source.labels"):
        sources.make(c)


class _TemplateModel:
    """Nearest template: logits are minus the distance to each class's clean image."""

    def __init__(self, templates):
        self.templates = templates

    def apply(self, variables, x):
        d = ((x[:, None] - self.templates[None]) ** 2).sum((2, 3, 4))
        return -d, {}


def test_redrawn_accuracy_separates_memorised_pixels_from_shapes():
    c = tiny_config()
    source = sources.make(c)
    size = source.image_shape[0]
    from fractaljax import augment

    labels = jnp.arange(c.source.num_classes)
    templates = augment.normalize(source.render_labels(labels, jax.random.key(0)))
    model = _TemplateModel(templates)
    clean = evals_task.accuracy(model, None, source, size, num=64, batch_size=32)
    redrawn = evals_task.accuracy(model, None, source, size, num=64, batch_size=32, redrawn=True)
    # The fixed images are recognised exactly; a fresh walk and fresh patches are not
    # pixel copies, so pixel matching loses accuracy on them.
    assert clean == 1.0
    assert redrawn < 0.9


def test_redrawn_is_none_without_class_systems():
    c = real_image.get_config("mini")
    c.source.num_classes, c.render.image_size = 4, 16
    c.model.variant = "test/4"
    source = sources.make(c)
    assert evals_task.accuracy(None, None, source, 16, redrawn=True) is None


def test_small_protocol_keeps_the_recipe_and_shrinks_the_sizes():
    small, paper = onepfrac.get_config("small"), onepfrac.get_config("vit_ti")
    assert small.render.image_size >= 4 * small.input_size  # a canvas to crop from
    assert small.augment.crop_scale[0] < 1.0 and small.augment.mix_prob == 1.0
    assert small.augment.randaugment == paper.augment.randaugment
    assert small.augment.label_smoothing == paper.augment.label_smoothing
    assert small.source.data == "fixed" and small.render.patch == "paste"  # official data
    ft = finetune_small.get_config()
    assert ft.downstream.val_size > 0 and len(ft.optim.lr_grid) >= 2


def test_the_search_chose_the_small_protocol():
    """The search's chosen variant is the small protocol point for point: the sweeps of
    configs/sweep_*_small.py read its stored points back instead of pre-training again."""
    from configs import search_small, sweep_delta_small
    from experiments import search
    from fractaljax import sweeps

    cfg = search_small.get_config()
    chosen = search.variant_config(cfg, cfg.search.chosen)
    sweep = sweep_delta_small.get_config()
    assert cfg.sweep.grid[0] in sweep.sweep.grid
    for random_init in (False, True):
        ids = [
            sweeps.point_identity(c.pretrain, c.finetune, 1000, 0, random_init)
            for c in (chosen, sweep)
        ]
        assert sweeps.point_key(ids[0]) == sweeps.point_key(ids[1])
    # Another variant is another point (the test can fail).
    other = search.variant_config(cfg, "A")
    assert sweeps.point_key(
        sweeps.point_identity(other.pretrain, other.finetune, 1000, 0, False)
    ) != sweeps.point_key(sweeps.point_identity(sweep.pretrain, sweep.finetune, 1000, 0, False))


def tiny_sweep(tmp_path, data_dir) -> ml_collections.ConfigDict:
    """configs/sweep_delta_mini.py at test size, on digits with a validation split."""
    from test_sweep import TINY

    from configs import sweep_delta_mini

    cfg = sweep_delta_mini.get_config()
    cfg.update_from_flattened_dict(TINY)
    cfg.finetune.downstream.data_dir = data_dir
    cfg.finetune.downstream.val_size = 200
    # One learning rate: the choice on validation is pinned by
    # test_evaluate_transfer_reports_validation_metrics and the GPU protocol's test.
    cfg.finetune.optim.lr_grid = ()
    cfg.sweep.grid, cfg.sweep.seeds, cfg.sweep.few_labels = (0.5,), (0,), 0
    cfg.sweep.points_dir, cfg.sweep.store_dir = "", str(tmp_path / "store")
    cfg.sweep.controls = {"drift": (("source.labels", "random"),)}
    cfg.sweep.metrics = ("finetune_val_top1", "probe_best_val_top1")
    return cfg


def test_a_sweep_also_pairs_its_values_with_the_named_ones():
    """``sweep.paired_with``: a table of differences to another swept value, seed by seed
    (Delta 0.1 against 0.001), beside those to the random init and the drift control."""
    from configs import sweep_delta_small
    from fractaljax import sweeps

    cfg = sweep_delta_small.get_config()
    assert cfg.sweep.paired_with == (0.001,)
    rows = []
    for seed, (rand, drift, small, big) in enumerate(
        [(0.80, 0.30, 0.20, 0.81), (0.79, 0.60, 0.25, 0.80), (0.80, 0.25, 0.10, 0.82)]
    ):
        rows += [
            {"init": "random", "value": "", "seed": seed, "m": rand},
            {"init": "control", "value": "drift", "seed": seed, "m": drift},
            {"init": "pretrained", "value": 0.001, "seed": seed, "m": small},
            {"init": "pretrained", "value": 0.1, "seed": seed, "m": big},
        ]
    assert sweeps.baselines(cfg, rows) == [
        ("drift", "the control 'drift'"), (0.001, "source.delta=0.001")
    ]  # fmt: skip
    summary = {s["value"]: s for s in sweeps.summarize(rows, ["m"], baseline=0.001)}
    assert summary[0.1]["m_diff"] == pytest.approx(np.mean([0.61, 0.55, 0.72]))
    assert summary[0.1]["m_diff_lo"] > 0 and "m_diff" not in summary[0.001]
    # Without rows of the value (a sweep part-way), no table; a value off the grid is an error.
    assert sweeps.baselines(cfg, [r for r in rows if r["value"] != 0.001])[1:] == []
    cfg.sweep.paired_with = (0.3,)
    with pytest.raises(ConfigError, match="sweep.paired_with=0.3"):
        sweeps.run_sweep(cfg, "/nonexistent", compute=False)


def test_the_best_value_is_chosen_on_validation_not_on_test():
    """``chosen_on_validation``: the value with the highest mean validation top-1 over
    seeds, even where another value is higher on test; a value with fewer seeds, a
    control and the random init are not candidates; no validation twin, no choice."""
    from fractaljax import sweeps

    rows = []
    for seed in range(3):
        rows += [
            {"init": "random", "value": "", "seed": seed, "m_top1": 0.70, "m_val_top1": 0.7},
            {"init": "control", "value": "drift", "seed": seed, "m_top1": 0.9,
             "m_val_top1": 0.99},
            {"init": "pretrained", "value": 0.1, "seed": seed, "m_top1": 0.80 + 0.01 * seed,
             "m_val_top1": 0.60},
            {"init": "pretrained", "value": 0.2, "seed": seed, "m_top1": 0.75 + 0.01 * seed,
             "m_val_top1": 0.65},
        ]  # fmt: skip
    rows.append({"init": "pretrained", "value": 0.3, "seed": 0, "m_top1": 0.9, "m_val_top1": 0.95})
    summary = sweeps.summarize(rows, ["m_top1"])
    (c,) = sweeps.chosen_on_validation(rows, ["m_top1"], summary)
    assert (c["value"], c["seeds"], c["runner_up"]) == (0.2, 3, 0.1)
    assert c["val_mean"] == pytest.approx(0.65)
    assert c["test"]["m_top1_diff"] == pytest.approx(0.06)  # 0.76 - 0.70 on average
    text = sweeps.chosen_table([c])
    assert text.startswith("m_top1: 0.2 (validation 65.0 over 3 seeds; next 0.1 at 60.0)")
    assert "-> test 76.0, d +6.0 [" in text
    assert sweeps.chosen_on_validation([{**r, "m_val_top1": ""} for r in rows], ["m_top1"],
                                       summary) == []  # fmt: skip


def test_time_budget_stops_new_points_and_keeps_finished_ones(tmp_path, monkeypatch):
    from fractaljax import sweeps

    cfg = tiny_sweep(tmp_path, "")
    cfg.sweep.time_budget_minutes = 0.5 / 60  # half a second
    calls = []

    def fake_point(cfg, field, value, seed, data, workdir, compute=True, control=None, *a):
        calls.append((value, control, compute))
        if not compute:
            return None
        import time

        time.sleep(0.6)
        return {"point": sweeps.point_label(field, value, seed, control)}

    monkeypatch.setattr(sweeps, "run_point", fake_point)
    data = ft_lib.Splits(*(np.zeros(1),) * 4, 10, "none")
    rows = sweeps.run_sweep(cfg, str(tmp_path), data=data)
    assert [r["point"] for r in rows] == ["random_init_seed0"]
    assert [c[2] for c in calls] == [True, False, False]  # the rest only read back


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (ROOT / "configs").glob("sweep_*.py")), ids=str
)
def test_every_sweep_config_pairs_only_with_its_own_grid(name):
    """Each configs/sweep_*.py passes the checks run_sweep makes before its first point
    (the classes and sources sweeps once inherited the Delta sweep's pairing with 0.001)."""
    import importlib

    from fractaljax import sweeps

    cfg = importlib.import_module(f"configs.{name}").get_config()
    for value in sweeps.paired_with(cfg):
        assert value in cfg.sweep.grid
