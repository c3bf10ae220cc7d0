"""configs/sweep_delta_gpu.py, the run prepared for a lent GPU, end to end on the CPU at a
tiny size (about a minute: a file of its own, so that the two pytest workers can split the
suite's heaviest tests; tests/test_protocol_e2e.py holds the search)."""


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
