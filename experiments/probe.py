"""Per-layer linear probes of a pre-trained ViT (and of a random init of the same model).

  python -m experiments.probe --pretrained runs/mini [--config.downstream.dataset=digits]

Extracts every block's token-averaged features and the pre-logits on
``probe_train_limit`` train images and the test split, fits closed-form ridge probes, and
writes ``probe.json`` and ``probe.png`` (accuracy per layer) into --pretrained (or --out).
The layer to report, ``best_layer`` in probe.json (starred in the table, ringed in the
plot), is chosen on the probe's held-out fifth of the training images, never on test.
"""

from __future__ import annotations

import json
import os

from absl import flags

from experiments import _cli as cli
from fractaljax import finetune as ft_lib
from fractaljax import probe, run_dir, train

_CONFIG = cli.define_config("finetune_mini", "Downstream config file.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pre-training --workdir.", required=True)
_OUT = flags.DEFINE_string("out", None, "Where to write probe.json/png (default: --pretrained).")
_RANDOM = flags.DEFINE_bool("random_baseline", True, "Also probe a random init of the model.")


def main(argv) -> None:
    del argv
    cfg = _CONFIG.value
    pre, model, params = run_dir.load(_PRETRAINED.value)
    data = ft_lib.load_downstream(
        cfg, train.input_size(pre), pre.render.channels, cfg.probe_train_limit
    )
    out = _OUT.value or _PRETRAINED.value
    os.makedirs(out, exist_ok=True)  # after the data loaded: bad input leaves nothing
    print(f"probing on {data.name}: {len(data.y_train)} train / {len(data.y_test)} test")
    results = {"pre-trained": ft_lib.linear_probe(model, params, data)}
    if _RANDOM.value:
        rmodel, rparams = ft_lib.random_init(pre, cfg.seed)
        results["random init"] = ft_lib.linear_probe(rmodel, rparams, data)
    # The layer to report is chosen on the probe's held-out fifth of the train split: the
    # largest test number is not a result (it picks the layer on the test set).
    best = {name: probe.best_layer(layers) for name, layers in results.items()}
    print("test top-1 % per layer (* the layer chosen on validation):")
    for name, layers in results.items():
        row = "  ".join(
            f"{k}{'*' if k == best[name] else ''} {100 * v['accuracy']:.1f}"
            for k, v in layers.items()
        )
        print(f"{name:<12} {row}")
    for name, layer in best.items():
        acc, val = results[name][layer]["accuracy"], results[name][layer]["val_accuracy"]
        print(
            f"{name}: best layer on validation {layer} (validation {100 * val:.1f}), "
            f"its test top-1 {100 * acc:.1f}"
        )
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(
            {"dataset": cfg.downstream.dataset, "best_layer": best, "results": results}, f, indent=2
        )
    ft_lib.plot_probe(
        results,
        os.path.join(out, "probe.png"),
        f"linear probes on {cfg.downstream.dataset}",
        best=best,
    )
    print(f"wrote {out}/probe.json and probe.png")


if __name__ == "__main__":
    cli.run(main)
