"""Quickstart: pre-train a small ViT on 1p-frac on the CPU, then measure transfer to real
images against a random init of the same model.

  python -m experiments.quickstart [--workdir runs/quickstart] [--config.total_steps=...]

1. pre-trains ``configs/onepfrac.py:mini`` (32 px, L = 100, a 0.8M-parameter ViT, 600
   steps; about 3 minutes on a 2-core CPU);
2. on real Fashion-MNIST when its files are present (else scikit-learn's digits, and it
   says so): (a) fine-tunes on 5k labels for 300 steps (the paper's protocol, shortened),
   (b) fits per-layer linear probes, for the pre-trained model and a random init;
3. prints the table and writes ``quickstart.json``. About 6 minutes in all on 2 cores.
Rerunning resumes finished or interrupted parts from --workdir.
"""

from __future__ import annotations

import json
import os
import time

from absl import flags

from configs import finetune_mini
from fractaljax import cli, downstream, errors, train
from fractaljax import finetune as ft_lib

_CONFIG = cli.define_config("onepfrac:mini", "Pre-training config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Run directory.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Downstream set (default: fashion_mnist if its files are here, else digits)."
)
_FT_STEPS = flags.DEFINE_integer("finetune_steps", 300, "Fine-tuning steps per model.")


def pick_dataset(ft) -> str:
    if _DATASET.value:
        return _DATASET.value
    try:
        downstream.prepare("fashion_mnist", ft.downstream.data_dir or downstream.DEFAULT_DATA_DIR)
        return "fashion_mnist"
    except errors.UserError as e:
        print(f"note: using scikit-learn digits, not Fashion-MNIST ({e})")
        return "digits"


def main(argv) -> None:
    del argv
    t0 = time.perf_counter()
    config, workdir = _CONFIG.value, _WORKDIR.value
    summary = train.train_and_evaluate(config, os.path.join(workdir, "pretrain"))
    pre, model, params = train.load_pretrained(os.path.join(workdir, "pretrain"))

    ft = finetune_mini.get_config()
    ft.total_steps = _FT_STEPS.value
    ft.checkpoint_every = _FT_STEPS.value
    ft.downstream.dataset = pick_dataset(ft)
    ft.seed = pre.seed  # the random-init row fine-tunes from pre's own init key too
    data = ft_lib.load_downstream(
        ft, train.input_size(pre), pre.render.channels, ft.probe_train_limit
    )
    n_ft = min(ft.downstream.num_labels, len(data.y_train))
    print(
        f"downstream: {data.name}, probes on {len(data.y_train)} train / "
        f"{len(data.y_test)} test images, fine-tuning on {n_ft} labels for {ft.total_steps} steps"
    )

    rows = {}
    rmodel, rparams = ft_lib.random_init(pre, seed=pre.seed)  # its own starting point
    for name, m, p, init in (
        ("1p-frac", model, params, params),
        ("random init", rmodel, rparams, None),
    ):
        where = os.path.join(workdir, "pretrained" if init is not None else "random_init")
        rows[name] = ft_lib.evaluate_transfer(m, p, init, data, ft, pre, where)
    ft_lib.plot_probe(
        {name: ft_lib.probe_layers_of(r) for name, r in rows.items()},
        os.path.join(workdir, "probe.png"),
        f"linear probes on {ft.downstream.dataset}",
    )
    result = {
        "dataset": ft.downstream.dataset,
        "pretrain": {
            k: summary.get(k) for k in ("first_loss", "last_loss", "eval_accuracy", "steps")
        },
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    with open(os.path.join(workdir, "quickstart.json"), "w") as f:
        json.dump(result, f, indent=2)

    pt = result["pretrain"]
    print(
        f"\n1p-frac pre-training: LPCE {pt['first_loss'] or float('nan'):.3f} -> "
        f"{pt['last_loss'] or float('nan'):.3f}, clean top-1 "
        f"{(pt['eval_accuracy'] or 0):.1%} over L={config.source.num_classes} classes"
    )
    print(f"\ntransfer to {ft.downstream.dataset} (test top-1, %):")
    print(f"{'init':<13}{'fine-tune':>11}{'probe last':>12}{'probe best':>12}  best layer")
    for name, r in rows.items():
        print(
            f"{name:<13}{100 * r['finetune_top1']:>11.1f}{100 * r['probe_last_top1']:>12.1f}"
            f"{100 * r['probe_best_top1']:>12.1f}  {r['probe_best_layer']}"
        )
    print(f"\n{result['seconds']:.0f} s in all; outputs in {workdir}/ (quickstart.json, probe.png)")


if __name__ == "__main__":
    cli.run(main)
