"""Pre-train a ViT on a synthetic source.

  python -m experiments.pretrain --config configs/onepfrac.py:mini --workdir runs/mini \
      [--config.source.delta=0.01 ...]

Resumes from the latest checkpoint in --workdir, with the config it started with (a change
to a field that moves the trajectory needs --allow_config_change, and is recorded);
SIGTERM or Ctrl-C saves a checkpoint at the next step and exits 0. Writes checkpoints/,
metrics.jsonl, tb/ (TensorBoard), config.json (and config_changes.jsonl) and summary.json
there.

Several processes (hosts) train one run with --coordinator_address, --num_processes,
--process_id (or --distributed where JAX detects them: TPU pods, SLURM, Open MPI); see
docs/scaling.md.
"""

from __future__ import annotations

from absl import flags

from experiments import _cli as cli
from fractaljax import train

_CONFIG = cli.define_config("onepfrac:mini", "Pre-training config file.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (resumed if it has checkpoints).", required=True
)
_ALLOW = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a run with a config that differs from its config.json (recorded there).",
)


def main(argv) -> None:
    del argv
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, allow_changes=_ALLOW.value)
    if "last_loss" in summary:
        if "eval_accuracy" in summary:
            evaluated = f"pre-training eval top-1 {summary['eval_accuracy']:.1%}"
        else:  # model.head='mdn': the error of the posterior mean of u
            evaluated = f"eval error of u {summary['eval_error_over_delta']:.3f} Delta"
        print(
            f"done: {summary['steps']} steps, loss {summary['first_loss']:.3f} -> "
            f"{summary['last_loss']:.3f}, {evaluated}, {summary['seconds']:.0f}s"
        )


if __name__ == "__main__":
    cli.run(main, multiprocess=True)
