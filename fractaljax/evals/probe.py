"""Per-layer linear probes on a downstream set, as an evaluator of the training loop.

``config.evals.probe`` (see fractaljax.evals) fits closed-form ridge probes on the features
of every block and of the pre-logits (fractaljax.probe) of ``num_train`` training images of
``dataset``, at the model's input size through the model-input contract, and reports their
top-1 on the held-out ``val_size`` images of the training split: never on the test split,
which stays for the final report (experiments.probe, the sweeps). The best layer is chosen
on the probe's own held-out part of its training images, as fractaljax.finetune does.

Logs ``probe_last_val_top1`` (pre-logits), ``probe_best_val_top1`` and
``probe_best_block`` (the chosen layer's depth, -1 for the pre-logits): a probe curve over
pre-training, which shows when the features that transfer appear.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from fractaljax import config_utils, models
from fractaljax import probe as probe_lib
from fractaljax.errors import UserError

DEFAULTS = dict(
    dataset="fashion_mnist", data_dir="", source_dir="", num_train=2000, val_size=1000, seed=0
)


def check(cfg: ml_collections.ConfigDict) -> None:
    """The block's own fields: known names, at least one training and one validation image."""
    config_utils.block_fields(
        cfg, DEFAULTS, "evals.probe", ("num_train", "val_size"),
        " (the probe reports validation accuracy, never test)",
    )  # fmt: skip


def layer_depth(name: str) -> int:
    """``'block3'`` -> 3, ``'pre_logits'`` -> -1 (a number, so it can be logged)."""
    return int(name[len("block") :]) if name.startswith("block") else -1


def make(config: ml_collections.ConfigDict, model, source, workdir: str, cfg) -> Callable:
    """The evaluator: ``params -> {'probe_last_val_top1', 'probe_best_val_top1',
    'probe_best_block'}``; the downstream set is loaded once, here."""
    from fractaljax import finetune as ft_lib  # the downstream loader (TFDS on first use)

    del workdir
    c = ml_collections.ConfigDict({**DEFAULTS, **cfg.to_dict()})
    ft = ml_collections.ConfigDict(
        {
            "seed": c.seed,
            "augment": {"interpolation": config.augment.get("interpolation", "bilinear")},
            "downstream": {
                "dataset": c.dataset, "data_dir": c.data_dir, "source_dir": c.source_dir,
                "val_size": c.val_size, "test_limit": 1,
            },
        }
    )  # fmt: skip
    try:
        data = ft_lib.load_downstream(
            ft, models.input_size(config, source), source.image_shape[-1], c.num_train
        )
    except UserError as e:  # it names the downstream fields: here they are evals.probe's
        msg = str(e).replace("downstream.", "evals.probe.")
        raise type(e)(msg if "evals.probe" in msg else f"evals.probe: {msg}") from None
    forward = probe_lib.feature_fn(model)  # compiled once for every call

    def run(params) -> dict[str, float]:
        probes = ft_lib.linear_probe(model, params, data, fn=forward)
        best = probe_lib.best_layer(probes)
        return {
            "probe_last_val_top1": probes["pre_logits"]["heldout_accuracy"],
            "probe_best_val_top1": probes[best]["heldout_accuracy"],
            "probe_best_block": layer_depth(best),
        }

    return run
