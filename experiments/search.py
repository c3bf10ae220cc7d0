"""Search for a protocol: named variants of a sweep config, each scored on validation data
against the random init of the same seed.

  python -m experiments.search --config configs/search_small.py [--only_finished]
      [--config.search.variants_run="(A, B)"] [--workdir runs/search_small]

``search.variants`` maps a variant's name to overrides of the base sweep config
(``(('pretrain.source.num_classes', 16), ('finetune.total_steps', 500), ...)``). For every
variant and seed of ``sweep.seeds`` it runs the variant's pre-training point (the first
value of ``sweep.grid``) and the random init of the same seed, with
:func:`fractaljax.sweeps.run_point`: points are content-addressed, so a random init shared
by variants with the same model and fine-tuning recipe is computed once, and a finished
point is read back from ``sweep.store_dir``.

The score of a variant is the paired difference, pre-trained minus random init of the same
seed, of the *validation* metrics of ``sweep.metrics`` (fine-tuning and probe accuracy on
held-out images of the train split, ``finetune.downstream.val_size``): the test split takes
no part in the choice. Writes ``results.csv`` (one row per point), ``summary.txt`` and
``summary.csv`` (per variant: means, paired d and its 95% t interval over seeds) to WORKDIR.
"""

from __future__ import annotations

import os
import time

import ml_collections
from absl import flags

from experiments import _cli as cli
from fractaljax import config_utils, run_dir, stats, sweeps, train
from fractaljax.errors import ConfigError, UserError
from fractaljax.metrics import format_duration

_CONFIG = cli.define_config("search_small", "Search config file.")
_FINISHED = flags.DEFINE_bool(
    "only_finished", False, "Tables of the finished points only; compute nothing."
)
_UPDATE = flags.DEFINE_bool(
    "update_store",
    False,
    "Also write each new point into sweep.store_dir (the committed store; read either way).",
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Tables (default: search.workdir).")


def variant_config(cfg: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The sweep config of variant ``name``: ``cfg`` with its overrides applied."""
    if name not in cfg.search.variants:
        known = ", ".join(cfg.search.variants)
        raise ConfigError(f"search.variants_run: no variant {name!r}; known: {known}")
    c = ml_collections.ConfigDict(cfg.to_dict())
    del c["search"]
    for path, value in cfg.search.variants[name]:
        try:
            c = config_utils.with_field(c, path, value)
        except (KeyError, AttributeError):
            raise ConfigError(f"search.variants.{name}: unknown field {path!r}") from None
    c.sweep.grid = tuple(c.sweep.grid)[:1]
    c.sweep.controls = {}
    return c


def variants_run(cfg) -> list[str]:
    names = list(cfg.search.get("variants_run", ()) or cfg.search.variants)
    for n in names:
        variant_config(cfg, n)  # every variant's config checked before any training
    return names


def summary_table(summary: list[dict], metrics: tuple[str, ...]) -> str:
    """Per variant: pre-trained mean +- sd, random init mean, and d [95% t] per metric."""
    width = 34
    lines = [
        f"{'variant':<14}{'seeds':>6}{'pretrain':>10}" + "".join(f" {m:>{width}}" for m in metrics)
    ]
    for s in summary:
        cells = ""
        for m in metrics:
            cell = f"{100 * s[f'{m}_mean']:.1f} vs {100 * s[f'{m}_random']:.1f}"
            if f"{m}_diff" in s:
                lo, hi = s[f"{m}_diff_lo"], s[f"{m}_diff_hi"]
                ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo == lo else ""
                cell += f" d {100 * s[f'{m}_diff']:+.1f}{ci}"
            cells += f" {cell:>{width}}"
        top = s.get("pretrain_top1_mean", float("nan"))
        pre = f"{100 * top:.1f}" if top == top else "-"
        lines.append(f"{s['variant']:<14}{s['seeds']:>6}{pre:>10}{cells}")
    return "\n".join(lines)


def summarize_variant(name: str, rows: list[dict], metrics: tuple[str, ...]) -> dict:
    """One variant's summary: its pre-trained rows paired with its random-init rows."""
    pre = [r for r in rows if r["init"] == "pretrained"]
    (s,) = [x for x in stats.summarize(rows, metrics) if x["value"] != "random init"] or [
        {"seeds": 0}
    ]
    s = dict(s, variant=name, seeds=len(pre))
    seeds = {r["seed"] for r in pre}  # the random inits paired with a pre-trained row
    rand = [r for r in rows if r["init"] == "random" and r["seed"] in seeds]
    for m in metrics:
        s[f"{m}_random"] = stats.mean_sd([r[m] for r in rand])[0] if rand else float("nan")
    tops = [r["pretrain_top1"] for r in pre if r.get("pretrain_top1") is not None]
    s["pretrain_top1_mean"] = sum(tops) / len(tops) if tops else float("nan")
    return s


def main(argv) -> None:
    del argv
    cfg = _CONFIG.value
    workdir = _WORKDIR.value or cfg.search.workdir
    names = variants_run(cfg)
    t0 = time.perf_counter()
    run_dir.prepare(workdir, cfg)
    compute = not _FINISHED.value
    all_rows, summaries, data, data_key = [], [], None, None
    metrics = sweeps.headline(cfg)
    for name in names:
        vc = variant_config(cfg, name)
        print(f"\n##### variant {name}", flush=True)
        key = (vc.finetune.to_json(), train.input_size(vc.pretrain), vc.pretrain.render.channels)
        if compute and key != data_key:  # downstream arrays at this variant's input
            data, data_key = sweeps.load_data(vc), key
        rows = sweeps.run_sweep(vc, os.path.join(workdir, name), compute, data, _UPDATE.value)
        for r in rows:
            r["variant"] = name
        all_rows += rows
        if rows:
            summaries.append(summarize_variant(name, rows, sweeps.metrics_of(rows, metrics)))
        sweeps.write_csv(
            all_rows,
            os.path.join(workdir, "results.csv"),
            first=("variant", "point", "value", "seed", "init"),
        )
    if not summaries:
        raise UserError("search: no finished point yet; run it without --only_finished")
    shown = sweeps.metrics_of(all_rows, metrics)
    table = summary_table(summaries, shown)
    sweeps.write_csv(summaries, os.path.join(workdir, "summary.csv"), first=("variant", "seeds"))
    with open(os.path.join(workdir, "summary.txt"), "w") as f:
        f.write(table + "\n")
    print(
        "\nsearch (validation top-1 %: pre-trained vs random init, mean over seeds; d: paired "
        f"difference, [95% t interval over seeds]):\n{table}\n\n"
        f"{format_duration(time.perf_counter() - t0)}; outputs in {workdir}/"
    )


if __name__ == "__main__":
    cli.run(main)
