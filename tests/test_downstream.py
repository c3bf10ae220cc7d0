import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import run_modules
from test_train import TINY_FLAGS, tiny_config

from configs import finetune_mini
from fractaljax import downstream, probe, train
from fractaljax import finetune as ft_lib
from fractaljax.errors import UserError

# CI sets FRACTALJAX_REQUIRE_DATA=1: there these tests run, and fail if the files are absent.
needs_fashion = pytest.mark.skipif(
    not downstream.fashion_mnist_available() and not os.environ.get("FRACTALJAX_REQUIRE_DATA"),
    reason=f"Fashion-MNIST idx files absent from {downstream.FASHION_MNIST_DIR} "
    "(apt-get install -y dataset-fashion-mnist; .ci/run does it)",
)


def test_digits_builder_prepares_and_loads(data_dir):
    tr = downstream.load("digits", "train", data_dir)
    te = downstream.load("digits", "test", data_dir)
    assert tr.images.shape == (1297, 8, 8, 1) and te.images.shape == (500, 8, 8, 1)
    assert tr.images.dtype == np.uint8 and tr.images.max() == 255
    assert set(np.unique(tr.labels)) == set(range(10)) and tr.num_classes == 10
    # A real TFDS builder, loadable by name once fractaljax.downstream is imported.
    builder = tfds.builder("sklearn_digits", data_dir=data_dir)
    assert builder.is_prepared() and builder.info.splits["test"].num_examples == 500


@needs_fashion
def test_fashion_mnist_builder_reads_the_real_files(data_dir):
    te = downstream.load("fashion_mnist", "test", data_dir)
    assert te.images.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(te.labels), [1000] * 10)
    assert 60 < te.images.mean() < 90  # real clothes, not blank or noise


def test_without_tfds_the_offline_sets_are_the_same_arrays(data_dir, tmp_path, monkeypatch, capfd):
    """A machine without tensorflow-datasets (a bare accelerator image) reads fashion_mnist
    and digits from their files, in the order TFDS stores them: the same downstream data."""
    sets = [("digits", "train"), ("digits", "test")]
    if downstream.fashion_mnist_available():
        sets.append(("fashion_mnist", "test"))
    capfd.readouterr()
    through = {
        s: downstream.load(*s, str(tmp_path) if s[0] == "digits" else data_dir) for s in sets
    }
    out = capfd.readouterr()
    # Preparing a set is one line, not TFDS's progress bars.
    assert "\r" not in out.out + out.err and "prepared digits once" in out.out, out
    monkeypatch.setattr(downstream, "tfds", None)
    for s, a in through.items():
        b = downstream.load(*s)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.num_classes == b.num_classes
    with pytest.raises(UserError, match="needs tensorflow-datasets"):
        downstream.load("cifar100", "test")


def test_missing_fashion_files_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist"):
        downstream.load("fashion_mnist", "test", str(tmp_path), source_dir=str(tmp_path / "x"))


def test_unprepared_tfds_set_says_how_to_prepare(tmp_path):
    with pytest.raises(UserError, match="download_and_prepare"):
        downstream.load("cifar100", "test", str(tmp_path))


def test_to_model_input_resizes_and_replicates():
    x = downstream.to_model_input(np.full((2, 8, 8, 1), 255, np.uint8), 16)
    assert x.shape == (2, 16, 16, 3) and float(x.min()) == pytest.approx(1.0)


def test_ridge_probe_separable_features_is_near_perfect():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 20)) * 5
    y = rng.integers(0, 5, 2000)
    x = centers[y] + rng.normal(size=(2000, 20))
    r = probe.ridge_probe(x[:1500], y[:1500], x[1500:], y[1500:], 5)
    assert r["accuracy"] > 0.98, r
    # Features unrelated to the labels: chance level.
    noise = rng.normal(size=x.shape)
    r = probe.ridge_probe(noise[:1500], y[:1500], noise[1500:], y[1500:], 5)
    assert r["accuracy"] < 0.3, r


@pytest.fixture(scope="module")
def digits_data(data_dir):
    ft = finetune_mini.get_config()
    ft.downstream.dataset = "digits"
    ft.downstream.data_dir = data_dir
    return ft, ft_lib.load_downstream(ft, 16, 3, 0)


def test_probe_random_init_digits_well_above_chance(digits_data):
    _, data = digits_data
    model, params = ft_lib.random_init(tiny_config(), seed=0)
    results = ft_lib.linear_probe(model, params, data)
    assert list(results) == ["block0", "block1", "pre_logits"]
    assert max(r["accuracy"] for r in results.values()) > 0.6, results


def test_finetune_few_steps_loss_falls(digits_data, tmp_path):
    ft, data = digits_data
    ft.total_steps, ft.log_every, ft.checkpoint_every, ft.batch_size = 40, 20, 40, 32
    ft.optim.lr = 0.5  # x 32/512
    pre = tiny_config()
    _, params = ft_lib.random_init(pre, seed=0)
    s = ft_lib.finetune(ft, pre, params, str(tmp_path), data=data)
    assert s["last_loss"] < s["first_loss"] - 0.15, s
    assert s["test_accuracy"] > 0.2, s  # chance: 0.1
    # The run's shape and classes are what its source reported, not a fabricated config.
    rec = json.loads((tmp_path / "source.json").read_text())
    assert rec == {"name": "digits", "num_classes": 10, "image_shape": [16, 16, 3]}
    assert "render" not in json.loads((tmp_path / "config.json").read_text())


def test_finetunings_that_differ_in_lr_seed_or_init_trace_one_step(digits_data, tmp_path):
    """A sweep point fine-tunes the random and the pre-trained init over a learning-rate
    grid: one traced step serves them all in a process (train.kept), with results bit for
    bit those of a step traced afresh; another batch size is another program."""
    ft, data = digits_data
    ft = ft.copy_and_resolve_references()
    ft.total_steps, ft.log_every, ft.checkpoint_every, ft.batch_size = 4, 2, 4, 16
    pre = tiny_config()
    _, other_init = ft_lib.random_init(pre, seed=1)  # stands in for pre-trained weights

    def tune(name, init=None, **fields):
        c = ft.copy_and_resolve_references()
        c.update_from_flattened_dict(fields)
        return ft_lib.finetune(c, pre, init, str(tmp_path / name), data=data)

    def steps():
        return [v for k, v in train._kept_programs.items() if k[0] == "train"]

    train._kept_programs.clear()
    tune("a", **{"optim.lr": 0.1})
    kept_run = tune("b", other_init, **{"optim.lr": 0.03, "seed": 3})
    (step,) = steps()
    assert step._cache_size() == 1  # traced once for both runs
    train._kept_programs.clear()
    fresh = tune("c", other_init, **{"optim.lr": 0.03, "seed": 3})
    for k in ("first_loss", "last_loss", "eval_loss", "eval_accuracy", "test_accuracy"):
        assert kept_run[k] == fresh[k], k
    tune("d", **{"batch_size": 8})
    assert len(steps()) == 2
    # What the programs take as arguments, or only the loop reads, is not in the key.
    c = ft.copy_and_resolve_references()
    c.optim.lr, c.seed, c.total_steps, c.warmup_steps, c.log_every = 9.0, 5, 7, 3, 1
    assert train.program_config(c) == train.program_config(ft)


def test_transfer_params_keeps_new_head():
    init = {"head": 1, "block0": 2, "embedding": 3}
    pre = {"head": 9, "block0": 8, "embedding": 7}
    assert train.transfer_params(init, pre) == {"head": 1, "block0": 8, "embedding": 7}


def test_probe_and_finetune_cli(tmp_path, tiny_run):
    pre, probe_out = tiny_run, tmp_path / "probe"  # the shared run is only read
    # A data directory of its own: the probe and the fine-tuning below start together and
    # both prepare digits there (the second waits for the first: downstream._prepare).
    data_dir = tmp_path / "tfds"
    common = ["--config.downstream.dataset=digits", f"--config.downstream.data_dir={data_dir}"]
    finetune = [
        f"--pretrained={pre}",
        f"--workdir={tmp_path / 'ft'}",
        "--config=configs/finetune_small.py",  # the small protocol's, with a grid
        *common,
        "--config.total_steps=10",
        "--config.checkpoint_every=10",
        "--config.optim.lr_grid=(0.1, 0.5)",  # one run each, the best on validation kept
        "--config.downstream.val_size=200",
    ]
    missing_data = [  # one line, exit 2
        f"--pretrained={pre}",
        "--config.downstream.dataset=fashion_mnist",
        f"--config.downstream.data_dir={tmp_path / 'empty'}",
        f"--config.downstream.source_dir={tmp_path / 'nowhere'}",
    ]
    (tmp_path / "out").mkdir()
    probed, tuned, no_data, no_run = run_modules(  # two at a time, from one interpreter
        [
            ("experiments.probe", [f"--pretrained={pre}", f"--out={probe_out}", *common], {}),
            ("experiments.finetune", finetune, {}),
            ("experiments.probe", missing_data, {}),
            ("experiments.probe", [f"--pretrained={tmp_path / 'nothing'}"], {}),
        ],
        str(tmp_path / "out"),
    )
    assert probed.returncode == 0, probed.stderr[-2000:]
    out = json.loads((probe_out / "probe.json").read_text())
    assert set(out["results"]) == {"pre-trained", "random init"}
    # The reported layer is the validation's choice, printed and stored, not the best test.
    for name, layers in out["results"].items():
        best = out["best_layer"][name]
        assert best == max(layers, key=lambda k: layers[k]["val_accuracy"])
        assert f"{name}: best layer on validation {best}" in probed.stdout
    assert (probe_out / "probe.png").stat().st_size > 1000
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    assert "test top-1" in tuned.stdout and "chosen on validation (0.1: " in tuned.stdout
    assert (tmp_path / "ft_lr0.1").is_dir() and (tmp_path / "ft_lr0.5").is_dir()
    out = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert out["lr"] in (0.1, 0.5) and 0 <= out["val_accuracy"] <= 1
    assert no_data.returncode == 2 and "dataset-fashion-mnist" in no_data.stderr, no_data.stderr
    assert len(no_data.stderr.strip().splitlines()) == 1
    assert no_run.returncode == 2 and "config.json" in no_run.stderr


def test_quickstart_small(run, tmp_path):
    """The README's main job at toy size: pre-train, fine-tune, probe, table."""
    res = run(
        "experiments.quickstart",
        f"--workdir={tmp_path / 'qs'}",
        *TINY_FLAGS,
        "--config.input_size=0",  # the quick recipe resizes to 32 px; the tiny canvas is 16
        "--dataset=digits",
        "--finetune_steps=5",
        env={"HOME": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "transfer to digits" in res.stdout and "random init" in res.stdout
    out = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    assert set(out["rows"]) == {"1p-frac", "random init"}
    # The sweep's chain (sweeps.evaluate_point): the pre-training task measured, clean and
    # redrawn, on the pre-trained row only.
    assert 0.0 <= out["pretrain"]["redrawn_top1"] <= 1.0 and "redrawn" in res.stdout
    assert out["rows"]["1p-frac"]["init"] == "pretrained"
    assert out["rows"]["random init"]["init"] == "random"
    for r in out["rows"].values():
        assert r["probe_best_top1"] == r[f"probe_{r['probe_best_layer']}"], r
        assert r["probe_best_top1"] > 0.3, r  # digits, chance 0.1


def test_best_layer_is_chosen_on_validation_never_on_test():
    probes = {
        "block0": {"accuracy": 0.90, "val_accuracy": 0.60},  # best on test
        "block1": {"accuracy": 0.70, "val_accuracy": 0.80},  # best on validation
        "pre_logits": {"accuracy": 0.80, "val_accuracy": 0.80},  # a tie: the earlier wins
    }
    assert probe.best_layer(probes) == "block1"
