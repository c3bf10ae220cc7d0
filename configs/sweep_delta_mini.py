"""The paper's Delta sweep at CPU scale: 1p-frac pre-training for Delta in {0.001, 0.01,
0.05, 0.1, 0.2} + a random init, each fine-tuned and probed on real Fashion-MNIST.

  python -m experiments.sweep --config configs/sweep_delta_mini.py

Mini protocol (one point ~7 minutes on a 2-core CPU; 3 seeds x (5 values + random init),
about 2 hours):
* pre-training: configs/onepfrac.py:mini (32 px, 10k points in 3x3 patches, ViT 'mu/8':
  width 128, 4 blocks, 16 tokens) with the paper's L = 1000 classes, 1200 steps of batch
  128 (154 images a class), flips, RandAugment m9 and label smoothing;
* fine-tuning: configs/finetune_mini.py, 5k labels, 300 SGD steps; and the few-label
  regime: 1k labels (100 a class), 300 steps;
* probes: ridge on each block's pooled features, 10k train / 10k test images; and 1k train.

Other sweeps reuse this protocol: configs/sweep_sigma_mini.py, sweep_classes_mini.py,
sweep_sources_mini.py; paper scale: configs/sweep_delta_vit_ti.py.
"""

import ml_collections

from configs import finetune_mini, onepfrac


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.pretrain = onepfrac.get_config("mini")
    c.pretrain.source.num_classes = 1000  # L, as the paper
    c.pretrain.total_steps = 1200
    c.pretrain.warmup_steps = 100
    c.pretrain.log_every = 100
    c.pretrain.checkpoint_every = 400

    c.finetune = finetune_mini.get_config()

    c.sweep = ml_collections.ConfigDict()
    c.sweep.field = "source.delta"  # any dotted field of `pretrain`, or 'source'
    c.sweep.grid = (0.001, 0.01, 0.05, 0.1, 0.2)
    c.sweep.seeds = (0, 1, 2)
    c.sweep.few_labels = 1000  # also fine-tune and probe on 1k labels (100 a class); 0: off
    c.sweep.random_init = True  # also evaluate a random init (per seed)
    c.sweep.log_x = True
    c.sweep.workdir = "runs/sweep_delta_mini"
    # Shared by all mini sweeps: a point met again (Delta 0.1 = sigma 3.5 = L 1000, the random
    # inits) is read back, not recomputed.
    c.sweep.points_dir = "runs/mini_points"
    # Each finished point's result (JSON, committed): read back before anything is computed.
    c.sweep.store_dir = "docs/results/mini_points"
    return c
