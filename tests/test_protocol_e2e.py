"""The protocol end to end at a tiny size, in a file of its own so that the two pytest
workers share the suite's heaviest tests (each about a minute): the GPU protocol's config
on the CPU, and the protocol search."""

import pytest


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_gpu_protocol_runs_on_the_cpu_at_a_tiny_size(tmp_path, data_dir):
    """configs/sweep_delta_gpu.py end to end (its four points, drift control included) with
    the model, canvas, steps and data shrunk: what a lent GPU would run, checked here."""
    from configs import sweep_delta_gpu
    from fractaljax import sweeps

    cfg = sweep_delta_gpu.get_config()
    cfg.update_from_flattened_dict(
        {
            "pretrain.render.image_size": 64,
            "pretrain.render.walkers": 64,
            "pretrain.render.steps": 16,
            "pretrain.render.pad": 2,
            "pretrain.input_size": 16,
            "pretrain.model.variant": "test/4",
            "pretrain.batch_size": 8,
            "pretrain.eval_batch_size": 8,
            "pretrain.total_steps": 3,
            "pretrain.warmup_steps": 1,
            "pretrain.log_every": 3,
            "pretrain.checkpoint_every": 3,
            "pretrain.evals.task.num": 64,
            "finetune.downstream.dataset": "digits",
            "finetune.downstream.data_dir": data_dir,
            "finetune.downstream.val_size": 200,
            "finetune.probe_train_limit": 300,
            "finetune.batch_size": 16,
            "finetune.total_steps": 3,
            "finetune.warmup_steps": 1,
            "finetune.log_every": 3,
            "finetune.checkpoint_every": 3,
        }
    )
    assert cfg.pretrain.model.dtype == "bfloat16" and cfg.sweep.controls  # as on the GPU
    rows = sweeps.run_sweep(cfg, str(tmp_path))
    assert [r["point"] for r in rows] == [
        "random_init_seed0", "drift_seed0", "delta=0.1_seed0", "delta=0.001_seed0"
    ]  # fmt: skip
    text = sweeps.report(cfg, rows, str(tmp_path))
    assert "paired with the control 'drift'" in text
    assert all(0 <= r["finetune_top1"] <= 1 and r["finetune_lr"] in (0.03, 0.1) for r in rows)


def test_search_scores_variants_on_validation_against_their_random_init(run, tmp_path, data_dir):
    """experiments.search end to end, tiny: two variants that share the pre-training (B only
    changes the fine-tuning), each paired with its own random init, a table of validation
    numbers, and a rerun that computes nothing."""
    from test_sweep import TINY

    flags = [f"--config.{k}={v}" for k, v in TINY.items() if k != "pretrain.source.num_classes"]
    args = [
        "experiments.search",
        f"--workdir={tmp_path}/search",
        "--config.search.variants_run=('A', 'B')",
        "--config.sweep.seeds=(0,)",
        "--config.sweep.few_labels=0",
        f"--config.sweep.points_dir={tmp_path}/points",
        f"--config.sweep.store_dir={tmp_path}/store",
        f"--config.finetune.downstream.data_dir={data_dir}",
        "--config.finetune.downstream.val_size=200",
        *flags,
    ]
    res = run(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    import csv

    with open(tmp_path / "search" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["init"]) for r in rows] == [
        ("A", "random"), ("A", "pretrained"), ("B", "random"), ("B", "pretrained")
    ]  # fmt: skip
    assert rows[1]["pretrain_dir"] == rows[3]["pretrain_dir"]  # one pre-training, two uses
    assert len({r["dir"] for r in rows}) == 4
    table = (tmp_path / "search" / "summary.txt").read_text().splitlines()
    assert table[0].split()[:3] == ["variant", "seeds", "pretrain"]
    assert [line.split()[0] for line in table[1:]] == ["A", "B"]
    assert "finetune_val_top1" in table[0] and "validation top-1" in res.stdout
    a = rows[1]
    d = float(a["finetune_val_top1"]) - float(rows[0]["finetune_val_top1"])
    assert f"d {100 * d:+.1f}" in table[1]
    res = run(*args, "--only_finished")
    assert res.returncode == 0 and res.stdout.count("2 finished points read back") == 2
    assert "done earlier" not in res.stdout  # one line per variant, not one per point
