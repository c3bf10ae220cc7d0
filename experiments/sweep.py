"""Sweep a pre-training config field; measure transfer of every point to a real data set.

  python -m experiments.sweep --config configs/sweep_delta_mini.py [--workdir runs/sweep_delta]
  python -m experiments.sweep --config configs/sweep_delta_mini.py \
      --config.sweep.grid="(0.01, 0.1)" --config.sweep.seeds="(0, 1)"

For every value of ``sweep.field`` (any dotted field of the pre-training config, e.g.
``source.delta``, ``source.sigma``, ``source.num_classes``, ``seed``; or ``source``, whose
values name a source config in configs/, e.g. ``fractaldb``) and every seed of
``sweep.seeds``, it

1. pre-trains ``pretrain`` with that value (``POINTS/<key>/pretrain``),
2. fits per-layer ridge probes on frozen features,
3. fine-tunes on ``finetune.downstream.num_labels`` labels (``POINTS/<key>/finetune``),

plus the same evaluation of a random init per seed, from that seed's pre-training init key
(paired). POINTS is ``<sweep.points_dir>/points`` (``WORKDIR/points`` if empty) and ``<key>``
a hash of everything the point's result depends on (:func:`point_identity`): sweeps that
share ``points_dir`` (all the mini sweeps do) compute a shared point, such as Delta 0.1 or a
random init, once. A finished point is read back, not computed: from its ``result.json``, or
from the store ``<sweep.store_dir>/<key>.json`` (identity, result row and loss curve; the mini
sweeps keep theirs, committed, in docs/results/mini_points, so a clone has every finished
point). An interrupted point resumes from its checkpoints.

Outputs in WORKDIR: ``results.csv`` (one row per point and seed: all metrics and wall
times), ``summary.csv`` / ``summary.txt`` (mean +- sd over seeds, paired difference to
random init with a 95% t interval over seeds), ``accuracy.png`` (accuracy against the
swept value, random init as lines), ``loss.png`` (pre-training loss curves) and
``probe.png`` (probe accuracy per layer).
"""

from __future__ import annotations

import time

from absl import flags

from experiments import _cli as cli
from fractaljax import run_dir, sweeps
from fractaljax.errors import UserError
from fractaljax.metrics import format_duration

_CONFIG = cli.define_config("sweep_delta_mini", "Sweep config file.")
_FINISHED = flags.DEFINE_bool(
    "only_finished", False, "Tables and plots of the finished points only; compute nothing."
)
_UPDATE = flags.DEFINE_bool(
    "update_store",
    False,
    "Also write each new point into sweep.store_dir (the committed store; read either way).",
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Tables and plots (default: sweep.workdir); points: sweep.points_dir."
)


def main(argv) -> None:
    del argv
    cfg = _CONFIG.value
    workdir = _WORKDIR.value or cfg.sweep.workdir
    sweeps.check_points(cfg)
    t0 = time.perf_counter()
    run_dir.prepare(workdir, cfg)
    rows = sweeps.run_sweep(cfg, workdir, compute=not _FINISHED.value, update_store=_UPDATE.value)
    if not rows:
        raise UserError(
            f"sweep {cfg.sweep.field}: no finished point yet; run it without --only_finished"
        )
    print("\n" + sweeps.report(cfg, rows, workdir))
    total = sum(r["total_seconds"] for r in rows)
    print(
        f"\ncompute in these points: {format_duration(total)}; this invocation "
        f"{format_duration(time.perf_counter() - t0)}. Outputs: {workdir}/results.csv, "
        "summary.csv, summary.txt, accuracy.png, loss.png, probe.png"
    )


if __name__ == "__main__":
    cli.run(main)
