"""Fine-tuning on a downstream set, as an evaluator of the training loop.

``config.evals.finetune`` (see fractaljax.evals) fine-tunes the weights of the current step
(all but the head, which starts new) on ``num_labels`` labelled images of ``dataset`` for
``steps`` steps with the recipe of ``configs/<recipe>.py`` at learning rate ``lr`` (x batch /
512), and reports top-1 on ``val_size`` held-out images of the training split: never on the
test split, which stays for the final report (experiments.finetune, the sweeps). Logged as
``finetune_val_top1``: a fine-tuning curve over pre-training, the paper's measure of
transfer at every interval instead of at the end alone.

Each call is a whole fine-tuning run (fractaljax.finetune.finetune, i.e. train.py with a
labelled source) in a scratch directory under the pre-training's workdir, removed after it:
nothing of it is kept but the number. Its log goes to ``evals_finetune.log`` beside the
pre-training's, not to stdout. A stop signal during it stops the pre-training at its last
checkpoint (rerun to resume).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable

import ml_collections

from fractaljax import config_utils, models
from fractaljax.errors import ConfigError, Preempted, UserError

DEFAULTS = dict(
    recipe="finetune_small", dataset="fashion_mnist", data_dir="", source_dir="",
    num_labels=1000, val_size=1000, steps=150, lr=0.1, seed=0,
)  # fmt: skip


def check(cfg: ml_collections.ConfigDict) -> None:
    """The block's own fields: known names, positive sizes and learning rate, a recipe in
    configs/."""
    c = config_utils.block_fields(
        cfg, DEFAULTS, "evals.finetune", ("num_labels", "val_size", "steps"),
        " (it reports validation accuracy, never test)",
    )  # fmt: skip
    if not (isinstance(c["lr"], (int, float)) and c["lr"] > 0):
        raise ConfigError(f"evals.finetune.lr={c['lr']}: must be > 0")
    run_config(cfg)  # the recipe exists


def run_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The fine-tuning config: ``configs/<recipe>.py`` with the block's data, size, steps
    and single learning rate (no grid: nothing is chosen inside the loop)."""
    c = ml_collections.ConfigDict({**DEFAULTS, **cfg.to_dict()})
    try:
        ft = importlib.import_module(f"configs.{c.recipe}").get_config()
    except ImportError:
        raise ConfigError(
            f"evals.finetune.recipe={c.recipe!r}: no fine-tuning config configs/{c.recipe}.py"
        ) from None
    ft.seed = c.seed
    d = ft.downstream
    d.dataset, d.data_dir, d.source_dir = c.dataset, c.data_dir, c.source_dir
    d.num_labels, d.val_size, d.test_limit = c.num_labels, c.val_size, 1  # test: not used
    ft.total_steps = ft.checkpoint_every = c.steps
    ft.warmup_steps = min(ft.warmup_steps, c.steps // 5)
    ft.log_every = c.steps
    ft.optim.lr, ft.optim.lr_grid = float(c.lr), ()
    return ft


def make(config: ml_collections.ConfigDict, model, source, workdir: str, cfg) -> Callable:
    """The evaluator: ``params -> {'finetune_val_top1'}``; the downstream set is loaded
    once, here (``num_labels`` images and the fine-tuning's held-out batch)."""
    from fractaljax import finetune as ft_lib  # the downstream loader (TFDS on first use)

    del model  # fine-tuning builds the model of `config` with the downstream head
    ft = run_config(cfg)
    size, channels = models.input_size(config, source), source.image_shape[-1]
    try:
        data = ft_lib.load_downstream(
            ft, size, channels, ft.downstream.num_labels + ft.eval_batch_size
        )
    except UserError as e:  # it names the downstream fields: here they are evals.finetune's
        msg = str(e).replace("downstream.", "evals.finetune.")
        raise type(e)(msg if "evals.finetune" in msg else f"evals.finetune: {msg}") from None
    pre = ml_collections.ConfigDict(config.to_dict())
    pre.render.channels = channels  # what the fine-tuning's input has
    log = os.path.join(workdir, "evals_finetune.log")

    def run(params) -> dict[str, float]:
        scratch = tempfile.mkdtemp(prefix="evals_finetune_", dir=workdir)
        try:
            with open(log, "a") as f, contextlib.redirect_stdout(f):
                out = ft_lib.finetune(ft, pre, params, os.path.join(scratch, "run"), data)
        except Preempted:
            raise Preempted(
                "a stop signal during evals.finetune: the pre-training stops at its last "
                f"checkpoint in {workdir}; rerun the same command to resume"
            ) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"finetune_val_top1": out["val_accuracy"]}

    return run
