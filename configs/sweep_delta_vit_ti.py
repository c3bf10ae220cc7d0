"""The paper's Delta sweep at paper scale, for a GPU or TPU: ViT-Tiny/16 at 224 px,
batch 256, 1p-frac with L = 1000, Delta in {0.001, 0.01, 0.05, 0.1, 0.2} + scratch,
each fine-tuned on CIFAR-100 (configs/finetune_cifar100.py) and probed per layer.

  python -m experiments.sweep --config configs/sweep_delta_vit_ti.py

Expected wall time, an estimate from the config and step times measured on one NVIDIA H200
(docs/results/bench_h200.log, with the renderer of that date; no GPU has run this config):
pre-training ``pretrain.total_steps`` = 240,000 steps at about 32 ms in bfloat16 is about
2.1 h (float32, 47 ms: 3.1 h); fine-tuning ``finetune.total_steps`` = 65,000 steps of batch
768 (3x the pre-training batch, no rendering: about 90 ms a step, a guess) about 1.6 h. One
Delta point about 3.7 h, the sweep with scratch about 21 h on one H200. Memory: CIFAR-100's
50k training images at 224 px in float32 take 30 GB on the device. Fewer steps:
--config.pretrain.total_steps=... --config.finetune.total_steps=...
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
