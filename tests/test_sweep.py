"""experiments.sweep end to end on a tiny protocol (scikit-learn digits)."""

import csv

import numpy as np

TINY = {
    "pretrain.source.num_classes": 8,
    "pretrain.render.image_size": 16,
    "pretrain.render.walkers": 64,
    "pretrain.render.steps": 16,
    "pretrain.render.pad": 1,
    "pretrain.model.variant": "test/4",
    "pretrain.batch_size": 16,
    "pretrain.eval_batch_size": 16,
    "pretrain.total_steps": 4,
    "pretrain.warmup_steps": 1,
    "pretrain.log_every": 2,
    "pretrain.checkpoint_every": 4,
    "finetune.downstream.dataset": "digits",
    "finetune.downstream.num_labels": 200,
    "finetune.probe_train_limit": 300,
    "finetune.batch_size": 16,
    "finetune.total_steps": 4,
    "finetune.warmup_steps": 1,
    "finetune.log_every": 2,
    "finetune.checkpoint_every": 4,
}
FLAGS = [f"--config.{k}={v}" for k, v in TINY.items()]


def test_sweep_writes_results_and_resumes(run, tmp_path):
    args = ["experiments.sweep", f"--workdir={tmp_path}", "--config.sweep.grid=(0.01, 0.5)"]
    res = run(*args, *FLAGS)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["point"] for r in rows] == [
        "delta=0.01_seed0",
        "delta=0.5_seed0",
        "random_init_seed0",
    ]
    for r in rows:
        for m in ("finetune_top1", "probe_best_top1", "probe_last_top1", "probe_block0"):
            assert 0.0 <= float(r[m]) <= 1.0, (m, r[m])
        assert float(r["total_seconds"]) > 0
    assert rows[0]["init"] == "pretrained" and np.isfinite(float(rows[0]["pretrain_last_loss"]))
    assert rows[2]["init"] == "random" and rows[2]["pretrain_top1"] == ""
    for name in ("accuracy.png", "loss.png", "probe.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "random init" in res.stdout
    # Rerun with one more value: the finished points are skipped, the new one runs.
    res = run(*args[:2], "--config.sweep.grid=(0.01, 0.5, 0.1)", *FLAGS)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("done earlier, skipped") == 3
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_source_sweep_and_bad_field(run, tmp_path):
    res = run(
        "experiments.sweep",
        f"--workdir={tmp_path}",
        "--config.sweep.field=source",
        "--config.sweep.grid=('ofdb',)",
        "--config.sweep.random_init=False",
        *FLAGS,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "source=ofdb_seed0" in (tmp_path / "results.csv").read_text()
    res = run("experiments.sweep", f"--workdir={tmp_path}/b", "--config.sweep.field=source.nope")
    assert res.returncode == 2 and "source.nope" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
