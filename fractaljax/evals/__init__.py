"""Evaluators: what the training loop measures besides its fixed batch, declared in the
config as ``config.evals.<name> = {every: N, ...}`` and run every N steps and at the end.

One module per evaluator, one signature: ``make(config, model, source, workdir, cfg) ->
run`` builds it once (data loaded, functions compiled on first use) and ``run(params) ->
{metric: float}`` measures, with metric names that start with the evaluator's name:

* ``task`` (fractaljax/evals/task.py): top-1 on the pre-training classes, clean and
  redrawn with a fresh walk and patches (memorised speckle fails the second);
* ``probe`` (fractaljax/evals/probe.py): per-layer ridge probes on a downstream set,
  validation top-1 of the last and the best layer;
* ``finetune`` (fractaljax/evals/finetune.py): a short fine-tuning run on a downstream set,
  validation top-1.

The final report of a model (test top-1 of fine-tuning with the learning rate chosen on
validation, and of the probes with the layer chosen on validation) composes the same pieces:
fractaljax.finetune.evaluate_transfer, called by fractaljax.sweeps.evaluate_point for every
sweep point and the quickstart.

Their results go into the same log rows as the loss (stdout, metrics.jsonl, TensorBoard).
``config.evals`` changes what is measured, not what is trained: a resume may change it and a
sweep point's identity leaves it out (fractaljax.run_dir.NEUTRAL_FIELDS).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections

from fractaljax.errors import ConfigError
from fractaljax.evals import finetune, probe, task

EVALUATORS = {"task": task.make, "probe": probe.make, "finetune": finetune.make}
CHECKS = {"task": task.check, "probe": probe.check, "finetune": finetune.check}


def validate(config: ml_collections.ConfigDict) -> None:
    """Check ``config.evals``: known names, ``every`` 0 (off) or a positive multiple of
    ``log_every`` (evaluators run on log steps)."""
    for name, cfg in (config.get("evals", None) or {}).items():
        if name not in EVALUATORS:
            raise ConfigError(f"evals.{name}: no such evaluator; choose from {sorted(EVALUATORS)}")
        every = cfg.get("every", 0)
        if not isinstance(every, int) or every < 0 or every % config.log_every:
            raise ConfigError(
                f"evals.{name}.every={every}: must be 0 (off) or a positive multiple of "
                f"log_every={config.log_every} (evaluators run on log steps)"
            )
        CHECKS[name](cfg)
        if not every:
            continue
        if name in ("task", "finetune") and config.model.get("head", "classes") != "classes":
            raise ConfigError(
                f"evals.{name}.every: the {name} evaluator needs a classification head, and "
                f"model.head='mdn' predicts no classes; set evals.{name}.every=0"
            )
        if jax.process_count() > 1:
            raise ConfigError(
                f"evals.{name}.every={every}: evaluators run in single-process runs only (their "
                "results are gathered on one host); set it to 0, or evaluate the checkpoints "
                "afterwards with experiments.probe"
            )


def make(config: ml_collections.ConfigDict, model, source, workdir: str) -> dict[str, tuple]:
    """``{name: (every, run)}`` of the evaluators of ``config.evals`` that are on."""
    validate(config)
    return {
        name: (int(cfg.every), EVALUATORS[name](config, model, source, workdir, cfg))
        for name, cfg in (config.get("evals", None) or {}).items()
        if cfg.get("every", 0)
    }


def due(evaluators: dict[str, tuple], step: int, last: int) -> dict[str, Callable]:
    """The evaluators to run at ``step``: those whose interval divides it, all at ``last``."""
    return {n: run for n, (every, run) in evaluators.items() if step % every == 0 or step == last}
