"""configs/sweep_delta_gpu.py, the run prepared for a lent GPU, end to end on the CPU at a
tiny size, and with it the drift control of every protocol sweep (about a minute: a file of
its own, so that the two pytest workers can split the suite's heaviest tests;
tests/test_protocol_e2e.py holds the search)."""

import os


def test_gpu_protocol_runs_on_the_cpu_at_a_tiny_size(tmp_path, data_dir):
    """configs/sweep_delta_gpu.py end to end (its four points, drift control included) with
    the model, canvas, steps and data shrunk: what a lent GPU would run, checked here. The
    drift control: a pre-training run of its own, paired with every value, its points in
    the store; another fine-tuning recipe reuses every pre-training."""
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
    cfg.sweep.store_dir = str(tmp_path / "store")
    rows = sweeps.run_sweep(cfg, str(tmp_path), update_store=True)
    assert [r["point"] for r in rows] == [
        "random_init_seed0", "drift_seed0", "delta=0.1_seed0", "delta=0.001_seed0"
    ]  # fmt: skip
    text = sweeps.report(cfg, rows, str(tmp_path))
    assert "paired with the control 'drift'" in text and "validation top-1" in text
    assert all(0 <= r["finetune_top1"] <= 1 and r["finetune_lr"] in (0.03, 0.1) for r in rows)
    # The control is a pre-training run of its own (the same steps, labels that carry
    # nothing): another point than the values it perturbs, with the pre-training's outputs.
    assert (rows[1]["init"], rows[1]["value"]) == ("control", "drift")
    assert len({r["dir"] for r in rows}) == 4
    for r in rows[1:]:
        assert 0 <= r["pretrain_clean_top1"] <= 1 and 0 <= r["pretrain_redrawn_top1"] <= 1
    vs = (tmp_path / "summary_vs_drift.txt").read_text().splitlines()
    assert vs[0].split()[:3] == ["value", "seeds", "pretrain"]
    metrics = sweeps.metrics_of(rows, sweeps.headline(cfg))
    assert metrics == tuple(cfg.sweep.metrics) == ("finetune_top1", "probe_best_top1",
                                                    "probe_last_top1")  # fmt: skip
    summary = {s["value"]: s for s in sweeps.summarize(rows, metrics, baseline="drift")}
    m = metrics[0]
    assert summary[0.1][f"{m}_diff"] == rows[2][m] - rows[1][m]
    assert f"{m}_diff" not in summary["drift"]
    assert len(list((tmp_path / "store").glob("*.json"))) == 4  # the committed results
    # Another fine-tuning recipe is other points, but the same pre-training runs.
    cfg.sweep.random_init, cfg.sweep.controls = False, {}
    cfg.finetune.total_steps = 4
    again = sweeps.run_sweep(cfg, str(tmp_path))  # not into the store: not asked
    for a, r in zip(again, rows[2:], strict=True):
        assert a["dir"] != r["dir"] and a["pretrain_dir"] == r["pretrain_dir"]
        assert a["pretrain_last_loss"] == r["pretrain_last_loss"]
        assert os.path.exists(os.path.join(a["dir"], "stored.json"))
    assert len(list((tmp_path / "pretrain").iterdir())) == 3  # drift, 0.1, 0.001
    assert len(list((tmp_path / "store").glob("*.json"))) == 4
