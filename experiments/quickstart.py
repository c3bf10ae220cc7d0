"""Quickstart: pre-train a small ViT on 1p-frac on the CPU, then measure transfer to real
images against a random init of the same model.

  python -m experiments.quickstart [--workdir runs/quickstart] [--config.total_steps=...]

1. pre-trains ``configs/onepfrac.py:quick``: the paper's recipe scaled down (the official
   fixed images, L = 16, on a 128 px canvas cropped to 32 px, RandAugment, erasing,
   mixup/cutmix; a 0.8M-parameter ViT with 16 tokens), 1,600 steps, a third of the small
   protocol's (about 3 minutes on a 2-core CPU);
2. on real Fashion-MNIST when its files are present (else scikit-learn's digits, and it
   says so): (a) fine-tunes on 1k labels for 150 steps with the small protocol's optimiser
   (configs/finetune_small.py) at learning rate 0.1, the value its validation split chose
   in every selection of the search, (b) fits per-layer linear probes (the layer chosen on
   validation), for the pre-trained model and a random init from the same starting key
   (both through fractaljax.sweeps.evaluate_point, the chain of every sweep point: the
   quickstart is a one-point sweep), and measures the pre-training task on the same
   classes redrawn with a fresh walk (shape, not memorised speckle);
3. prints the table, with the committed results of the full small protocol beside it
   (docs/results/search_small: the 4,800-step run over several seeds), and writes
   ``quickstart.json``. About 5 minutes in all on 2 cores (284 s measured 2026-12-07).
Rerunning resumes finished or interrupted parts from --workdir.
"""

from __future__ import annotations

import csv
import json
import os
import time

from absl import flags

from configs import finetune_small, search_small
from experiments import _cli as cli
from fractaljax import downstream, errors, sweeps, train
from fractaljax import finetune as ft_lib

_CONFIG = cli.define_config("onepfrac:quick", "Pre-training config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Run directory.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Downstream set (default: fashion_mnist if its files are here, else digits)."
)
_FT_LABELS = flags.DEFINE_integer("finetune_labels", 1000, "Labelled images to fine-tune on.")
_FT_STEPS = flags.DEFINE_integer("finetune_steps", 150, "Fine-tuning steps per model.")
_FT_LR = flags.DEFINE_float("finetune_lr", 0.1, "Fine-tuning learning rate (x batch / 512).")

# The committed results of the full small protocol (experiments.search, configs/search_small.py).
REFERENCE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "results",
    "search_small",
    "summary.csv",
)
REFERENCE_METRICS = (
    ("fine-tune 1k", "finetune_1000labels_val_top1"),
    ("fine-tune 5k", "finetune_val_top1"),
    ("probe best 1k", "probe_best_1000labels_val_top1"),
)


def pick_dataset(ft) -> str:
    if _DATASET.value:
        return _DATASET.value
    try:
        downstream.prepare("fashion_mnist", ft.downstream.data_dir or downstream.DEFAULT_DATA_DIR)
        return "fashion_mnist"
    except errors.UserError as e:
        print(f"note: using scikit-learn digits, not Fashion-MNIST ({e})")
        return "digits"


def reference_lines(variant: str) -> list[str]:
    """The committed full-protocol row of the search (validation accuracy, paired with the
    random init of the same seed), or nothing where the file is absent."""
    if not os.path.exists(REFERENCE):
        return []
    with open(REFERENCE) as f:
        rows = [r for r in csv.DictReader(f) if r["variant"] == variant]
    if not rows:
        return []
    r = rows[0]
    cells = []
    for label, m in REFERENCE_METRICS:
        if r.get(f"{m}_mean"):
            d, lo, hi = (float(r[f"{m}_diff{x}"]) for x in ("", "_lo", "_hi"))
            ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo == lo else ""
            cells.append(
                f"  {label:<14}{100 * float(r[f'{m}_mean']):>6.1f} vs "
                f"{100 * float(r[f'{m}_random']):.1f}  d {100 * d:+.1f}{ci}"
            )
    return [
        f"the full small protocol (onepfrac.py:small, 4,800 steps; {r['seeds']} seed(s), "
        "Fashion-MNIST validation, 1p-frac vs random init; docs/results/README.md):",
        *cells,
    ]


def main(argv) -> None:
    del argv
    t0 = time.perf_counter()
    pre, workdir = _CONFIG.value, _WORKDIR.value

    ft = finetune_small.get_config()
    ft.optim.lr_grid = ()  # one value: the one the search's validation chose every time
    ft.optim.lr = _FT_LR.value
    ft.downstream.num_labels = _FT_LABELS.value
    ft.total_steps = ft.checkpoint_every = _FT_STEPS.value
    ft.downstream.dataset = pick_dataset(ft)
    if ft.downstream.dataset != "fashion_mnist":
        ft.downstream.val_size = 0  # nothing is chosen on it here; small sets need every image
    ft.seed = pre.seed  # the random-init row fine-tunes from pre's own init key too
    train.validate(pre)  # before minutes of data loading
    data = ft_lib.load_downstream(
        ft, train.input_size(pre), pre.render.channels, ft.probe_train_limit
    )
    n_ft = min(ft.downstream.num_labels, len(data.y_train))
    print(
        f"downstream: {data.name}, probes on {len(data.y_train)} train / "
        f"{len(data.y_test)} test images, fine-tuning on {n_ft} labels for {ft.total_steps} steps"
    )

    # A one-point sweep: the pre-trained model and the random init it started from, through
    # the chain every sweep point goes through (fractaljax.sweeps.evaluate_point).
    label = {"onepfrac": "1p-frac"}.get(pre.source.name, pre.source.name)
    rows = {
        label: sweeps.evaluate_point(
            label, pre, pre.seed, data, ft, os.path.join(workdir, "pretrained"),
            pre_dir=os.path.join(workdir, "pretrain"),
        ),
        "random init": sweeps.evaluate_point(
            "random init", pre, pre.seed, data, ft, os.path.join(workdir, "random_init")
        ),
    }  # fmt: skip
    ft_lib.plot_probe(
        {name: ft_lib.probe_layers_of(r) for name, r in rows.items()},
        os.path.join(workdir, "probe.png"),
        f"linear probes on {ft.downstream.dataset}",
    )
    r = rows[label]
    result = {
        "dataset": ft.downstream.dataset,
        "pretrain": {
            "first_loss": r["pretrain_first_loss"],
            "last_loss": r["pretrain_last_loss"],
            "eval_accuracy": r["pretrain_top1"],
            "clean_top1": r["pretrain_clean_top1"],
            "redrawn_top1": r["pretrain_redrawn_top1"],
        },
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    with open(os.path.join(workdir, "quickstart.json"), "w") as f:
        json.dump(result, f, indent=2)

    pt = result["pretrain"]
    redrawn = pt["redrawn_top1"]
    print(
        f"\n{label} pre-training: LPCE {pt['first_loss'] or float('nan'):.3f} -> "
        f"{pt['last_loss'] or float('nan'):.3f}; top-1 over its {pre.source.num_classes} "
        f"classes {pt['clean_top1']:.1%} on its own images"
        + (
            f", {redrawn:.1%} on the same classes redrawn (shape, not speckle)"
            if redrawn is not None
            else ""
        )
    )
    print(f"\ntransfer to {ft.downstream.dataset} (test top-1, %):")
    print(f"{'init':<13}{'fine-tune':>11}{'probe last':>12}{'probe best':>12}  best layer")
    for name, r in rows.items():
        print(
            f"{name:<13}{100 * r['finetune_top1']:>11.1f}{100 * r['probe_last_top1']:>12.1f}"
            f"{100 * r['probe_best_top1']:>12.1f}  {r['probe_best_layer']}"
        )
    # The committed numbers are 1p-frac's on Fashion-MNIST: beside a like run only.
    like = ft.downstream.dataset == "fashion_mnist" and pre.source.name == "onepfrac"
    ref = reference_lines(search_small.get_config().search.chosen) if like else []
    if ref:
        print("\nfor comparison, " + "\n".join(ref))
    print(f"\n{result['seconds']:.0f} s in all; outputs in {workdir}/ (quickstart.json, probe.png)")


if __name__ == "__main__":
    cli.run(main)
