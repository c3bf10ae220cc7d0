"""The paper's Delta sweep in the small protocol: 1p-frac pre-training for Delta in {0.001,
0.01, 0.05, 0.1, 0.2}, a random init and the drift control, each fine-tuned and probed on
real Fashion-MNIST; paired differences with 95% t intervals over 3 seeds.

  python -m experiments.sweep --config configs/sweep_delta_small.py [--only_finished]

Protocol (how it was chosen: docs/results/README.md, "The search for the small protocol"):
* pre-training: configs/onepfrac.py:small, the paper's recipe scaled down (the official
  fixed data set on a 128 px canvas cropped to 32 px, RandAugment, erasing, mixup/cutmix,
  smoothing, AdamW; ViT mu/8 with 16 tokens of 8 px);
* fine-tuning: configs/finetune_small.py, 5k labels (and 1k labels, fewer steps), the
  learning rate chosen per init on 5,000 held-out train-split images; per-layer ridge
  probes, the layer chosen on validation; the test split reported once;
* controls: the random init of each seed (the pre-training's own starting point) and the
  drift control of each seed (the same pre-training on labels drawn independently of the
  images: the same AdamW steps with nothing to learn).
Other sweeps of this protocol: configs/sweep_classes_small.py, sweep_sources_small.py.
"""

import ml_collections

from configs import finetune_small, onepfrac


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.pretrain = onepfrac.get_config("small")
    c.finetune = finetune_small.get_config()

    c.sweep = ml_collections.ConfigDict()
    c.sweep.field = "source.delta"  # any dotted field of `pretrain`, or 'source'
    c.sweep.grid = (0.001, 0.01, 0.05, 0.1, 0.2)
    c.sweep.seeds = (0, 1, 2)
    c.sweep.few_labels = 1000  # also fine-tune and probe on 1k labels (100 a class)
    c.sweep.random_init = True
    c.sweep.controls = {"drift": (("source.labels", "random"),)}
    # Also paired with Delta 0.001 (summary_vs_0.001.txt): the paper's collapse at small Delta.
    c.sweep.paired_with = (0.001,)
    c.sweep.metrics = ("finetune_top1", "probe_best_top1", "probe_last_top1")
    c.sweep.recipe = "small"  # the size of the source configs of a 'source' sweep
    c.sweep.log_x = True
    c.sweep.workdir = "runs/sweep_delta_small"
    # Minutes after which no new point starts (one under way finishes); 0: no limit.
    c.sweep.time_budget_minutes = 0.0
    # Shared by the small sweeps and the search: a point met again is read back.
    c.sweep.points_dir = "runs/small_points"
    c.sweep.store_dir = "docs/results/small_points"
    return c
