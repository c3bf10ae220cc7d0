"""The paper's Delta sweep at paper scale, for a GPU or TPU: ViT-Tiny/16 at 224 px,
batch 256, 1p-frac with L = 1000, Delta in {0.001, 0.01, 0.05, 0.1, 0.2} + scratch,
each fine-tuned on CIFAR-100 (configs/finetune_cifar100.py) and probed per layer.

  python -m experiments.sweep --config configs/sweep_delta_vit_ti.py

Expected wall time, from step times measured on one NVIDIA H200 (docs/results/
bench_h200.log, benchmarks/train_bench.py): pre-training 32.0 ms/step in bfloat16
(46.7 ms in float32), so 300k steps take 2.7 h (3.9 h); fine-tuning ~30 ms/step (the
step without rendering), 19.5k steps ~10 min. One Delta point ~2.9 h, the sweep with
scratch ~15 h on one H200 (bfloat16). Fewer steps: --config.pretrain.total_steps=...
"""

import ml_collections

from configs import finetune_cifar100, onepfrac


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.pretrain = onepfrac.get_config("vit_ti")
    c.pretrain.model.dtype = "bfloat16"
    c.finetune = finetune_cifar100.get_config()

    c.sweep = ml_collections.ConfigDict()
    c.sweep.field = "source.delta"
    c.sweep.grid = (0.001, 0.01, 0.05, 0.1, 0.2)
    c.sweep.seeds = (0,)
    c.sweep.random_init = True
    c.sweep.log_x = True
    c.sweep.workdir = "runs/sweep_delta_vit_ti"
    return c
