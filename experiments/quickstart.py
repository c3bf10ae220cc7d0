"""Quickstart: pre-train a small ViT on 1p-frac on the CPU, in a few minutes, and report.

  python -m experiments.quickstart [--workdir runs/quickstart] [--config.total_steps=...]

Runs ``configs/onepfrac_mini.py`` (32 px, L = 100, a 0.8M-parameter ViT, 600 steps; about
3 minutes on a 2-core CPU). Rerunning resumes, or reports a finished run.
"""

from __future__ import annotations

from absl import flags

from fractaljax import cli, train

_CONFIG = cli.define_config("onepfrac_mini", "Pre-training config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Run directory.")


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    summary = train.train_and_evaluate(config, _WORKDIR.value)
    if "last_loss" not in summary:
        print(
            f"{_WORKDIR.value} already holds a finished run of {config.total_steps} steps; "
            "pass another --workdir to train again"
        )
        return
    chance = 1.0 / config.source.num_classes
    print(
        "\nquickstart summary (1p-frac pre-training)\n"
        f"  steps                 {summary['steps']}\n"
        f"  LPCE loss             {summary['first_loss']:.3f} -> {summary['last_loss']:.3f}"
        f"  (ln L = ln {config.source.num_classes})\n"
        f"  pre-training top-1    {summary['eval_accuracy']:.1%}  (chance {chance:.1%})\n"
        f"  speed                 {summary['img_per_s']:.0f} img/s, "
        f"{summary['step_time']:.3f} s/step\n"
        f"  wall time             {summary['seconds']:.0f} s\n"
        f"  outputs               {_WORKDIR.value}/ (metrics.jsonl, tb/, checkpoints/)"
    )


if __name__ == "__main__":
    cli.run(main)
