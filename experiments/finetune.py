"""Fine-tune a pre-trained ViT (new head) on a real labelled set; report test top-1.

  python -m experiments.finetune --pretrained runs/mini --workdir runs/mini_ft \
      [--config.downstream.dataset=digits] [--config.total_steps=...] [--random_init]

SGD with momentum, cosine schedule (configs/finetune_mini.py), on
``downstream.num_labels`` labelled train images; the same train loop as pre-training
(checkpoints, resume, metrics, NaN guard). With several learning rates in
``optim.lr_grid`` (configs/finetune_small.py) it fine-tunes once per rate (in
``WORKDIR_lr<lr>``) and keeps the one with the best accuracy on ``downstream.val_size``
held-out train-split images, never on test. ``--random_init`` trains the same model from
scratch instead, the baseline.
"""

from __future__ import annotations

import json
import os

from absl import flags

from experiments import _cli as cli
from fractaljax import finetune as ft_lib
from fractaljax import run_dir, train

_CONFIG = cli.define_config("finetune_mini", "Fine-tuning config file.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pre-training --workdir.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Fine-tuning run directory.", required=True)
_RANDOM = flags.DEFINE_bool("random_init", False, "Start from a random init, not the weights.")


def main(argv) -> None:
    del argv
    cfg = _CONFIG.value
    pre, _, params = run_dir.load(_PRETRAINED.value)
    init_params = None if _RANDOM.value else params
    grid = ft_lib.lr_grid(cfg)
    if len(grid) > 1:  # one run per learning rate, the best on validation kept
        data = ft_lib.load_downstream(
            cfg, train.input_size(pre), pre.render.channels, cfg.downstream.num_labels
        )
        run = ft_lib.finetune_selected(cfg, pre, init_params, _WORKDIR.value, data)
        tried = ", ".join(f"{lr:g}: {v:.1%}" for lr, v in run["val_by_lr"].items())
        chosen = f"; learning rate {run['lr']:g} chosen on validation ({tried})"
        summary = {**run, "steps": cfg.total_steps}
        del summary["val_by_lr"]
    else:
        summary, chosen = ft_lib.finetune(cfg, pre, init_params, _WORKDIR.value), ""
    init = "random init" if _RANDOM.value else f"pre-trained ({_PRETRAINED.value})"
    print(
        f"fine-tuned {init} on {cfg.downstream.dataset} "
        f"({cfg.downstream.num_labels or 'all'} labels, {summary['steps']} steps): "
        f"test top-1 {summary['test_accuracy']:.1%}{chosen}"
    )
    os.makedirs(_WORKDIR.value, exist_ok=True)
    with open(os.path.join(_WORKDIR.value, "finetune.json"), "w") as f:
        json.dump({k: v for k, v in summary.items() if isinstance(v, (int, float))}, f, indent=2)


if __name__ == "__main__":
    cli.run(main)
