"""Downstream evaluation of the small protocol (configs/onepfrac.py:small): fine-tuning on
5k (and 1k) labels of real Fashion-MNIST with the learning rate chosen per init on a
validation split, and per-layer linear probes.

  python -m experiments.finetune --pretrained runs/small --workdir runs/small_ft \
      --config configs/finetune_small.py
  python -m experiments.probe --pretrained runs/small --config configs/finetune_small.py

The optimiser is the paper's (SGD, Nesterov momentum 0.9, weight decay 1e-4, warm-up and
cosine); the learning rate is not one value for every init: each model is fine-tuned once
per value of ``optim.lr_grid`` and the run with the best accuracy on ``downstream.val_size``
held-out images of the train split is kept (never chosen on test). The validation images
come from the same seeded permutation of the train split as the labelled ones, after them,
so they are never trained on. Images are resized to the model's input (32 px), gray
replicated to 3 channels, normalised as in pre-training.
"""

import ml_collections

from configs import finetune_mini


def get_config() -> ml_collections.ConfigDict:
    c = finetune_mini.get_config()
    c.downstream.val_size = 5000  # held-out train-split images: every choice is made here
    c.probe_train_limit = 10000

    c.batch_size = 128
    c.total_steps = 300
    c.warmup_steps = 20
    c.few_labels_steps = 150  # the 1k-label runs: fewer labels, fewer steps (similar epochs)
    c.optim.lr = 0.1  # x batch_size / 512; the single value when lr_grid is empty
    c.optim.lr_grid = (0.03, 0.1)  # tried per init; the best on validation is kept

    c.augment.crop_scale = (1.0, 1.0)
    c.augment.hflip = 0.5
    c.augment.label_smoothing = 0.0
    return c
