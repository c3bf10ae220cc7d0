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

import csv
import hashlib
import importlib
import json
import os
import time

import ml_collections
import numpy as np
from absl import flags

from fractaljax import cli, config_utils, stats, train
from fractaljax import finetune as ft_lib
from fractaljax.errors import ConfigError, UserError
from fractaljax.metrics import format_duration, read_jsonl

_CONFIG = cli.define_config("sweep_delta_mini", "Sweep config file.")
_FINISHED = flags.DEFINE_bool(
    "only_finished", False, "Tables and plots of the finished points only; compute nothing."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Tables and plots (default: sweep.workdir); points: sweep.points_dir."
)

METRICS = ("finetune_top1", "probe_best_top1", "probe_last_top1")


def metrics_of(rows: list[dict]) -> tuple[str, ...]:
    """The headline metrics present in ``rows``: METRICS, and their few-label twins
    (``*_<n>labels_top1``) where the sweep ran a few-label regime."""
    few = sorted({k for r in rows for k in r if k.endswith("labels_top1")})
    return METRICS + tuple(few)


def source_block(name: str, like: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``configs/<name>.py``'s source block, with ``like``'s number of classes."""
    try:
        module = importlib.import_module(f"configs.{name}")
    except ImportError:
        raise ConfigError(f"sweep.grid: no source config configs/{name}.py") from None
    try:
        c = module.get_config("mini")
    except TypeError:  # a config without a size argument (configs/onepfrac.py)
        c = module.get_config()
    block = ml_collections.ConfigDict(c.source.to_dict())
    block.num_classes = like.num_classes
    return block


def point_config(pre: ml_collections.ConfigDict, field: str, value, seed: int):
    """The pre-training config of one point of the sweep."""
    c = ml_collections.ConfigDict(pre.to_dict())
    if field == "source":
        c.source = source_block(value, pre.source)
    else:
        c = config_utils.with_field(c, field, value)
    if field != "seed":
        c.seed = seed
    return c


def point_name(field: str, value, seed: int) -> str:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{field.split('.')[-1]}={shown}_seed{seed}"


def evaluate(name, model, params, init, data, ft, pre, point_dir, few_labels=0) -> dict:
    """:func:`fractaljax.finetune.evaluate_transfer` of one point, with a line on stdout."""
    row = ft_lib.evaluate_transfer(model, params, init, data, ft, pre, point_dir, few_labels)
    msg = (
        f"{name}: fine-tune {row['finetune_top1']:.1%}, probe last {row['probe_last_top1']:.1%}"
        f", best {row['probe_best_top1']:.1%} ({row['probe_best_layer']})"
    )
    if few_labels:
        n = f"{few_labels}labels"
        msg += (
            f"; {few_labels} labels: fine-tune {row[f'finetune_{n}_top1']:.1%}, probe best "
            f"{row[f'probe_best_{n}_top1']:.1%}"
        )
    print(msg, flush=True)
    return row


# Bumped when a point's result would change for the same configs (its cache key includes it).
POINT_VERSION = 1


def point_identity(pre, ft, few_labels: int, seed: int, random_init: bool) -> dict:
    """Everything a point's result depends on: equal identities give equal results, so
    sweeps that share ``sweep.points_dir`` compute a shared point once.

    A random init depends on the model, its input and the seed only, not on the source: its
    features come from the init key, per parameter path, and fine-tuning draws a new head.
    """
    pre = _without_defaults(pre)
    if random_init:
        what = {
            "random_init": {
                "model": pre.model.to_dict(),
                "input_size": train.input_size(pre),
                "channels": pre.render.channels,
                "seed": seed,
            }
        }
    else:
        what = {"pretrain": pre.to_dict()}
    return {"version": POINT_VERSION, **what, "finetune": ft.to_dict(), "few_labels": few_labels}


# Fields added after points were stored, at the value that reproduces those points: left out
# of a point's identity at that value, so the stored points keep their keys.
LATER_DEFAULTS = {("model", "init"): "big_vision"}
# Fields that change how, not what, is computed: the rasterisers draw identical images, and
# sharding the parameters changes only the order of float sums.
NEUTRAL = ("render.rasterizer", "param_sharding", "fsdp_min_size")


def _without_defaults(pre: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    pre = ml_collections.ConfigDict(pre.to_dict())
    for (block, field), value in LATER_DEFAULTS.items():
        if block in pre and pre[block].get(field, value) == value and field in pre[block]:
            del pre[block][field]
    for path in NEUTRAL:
        *blocks, field = path.split(".")
        parent = pre
        for b in blocks:
            parent = parent.get(b) if parent is not None else None
        if parent is not None and field in parent:
            del parent[field]
    return pre


def point_key(identity: dict) -> str:
    """A short stable hash of :func:`point_identity` (its JSON with sorted keys)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def point_setup(cfg, field: str, value, seed: int):
    """``(pretrain config, finetune config, identity)`` of a sweep point (``value`` None:
    the random init)."""
    if value is None:
        pre = ml_collections.ConfigDict(cfg.pretrain.to_dict())
        pre.seed = seed
    else:
        pre = point_config(cfg.pretrain, field, value, seed)
    # The labelled subset is the same for every point (paired comparisons); the seed moves
    # the fine-tuning's batches and augmentation.
    ft = ml_collections.ConfigDict(cfg.finetune.to_dict())
    ft.seed = seed
    few = cfg.sweep.get("few_labels", 0)
    return pre, ft, point_identity(pre, ft, few, seed, random_init=value is None)


def run_point(cfg, field, value, seed, data, workdir, compute: bool = True) -> dict | None:
    """Pre-train (or not: ``value is None`` is the random init) and evaluate one point.

    The point lives in ``<sweep.points_dir or workdir>/points/<key>`` (see
    :func:`point_identity`); a finished one (its ``result.json`` exists) is read back.
    """
    t0 = time.perf_counter()
    name = point_name(field, value, seed) if value is not None else f"random_init_seed{seed}"
    pre, ft, identity = point_setup(cfg, field, value, seed)
    few = cfg.sweep.get("few_labels", 0)
    key = point_key(identity)
    root = cfg.sweep.get("points_dir", "") or workdir
    point_dir = os.path.join(root, "points", key)
    path = os.path.join(point_dir, "result.json")
    store = cfg.sweep.get("store_dir", "")
    stored = store and os.path.join(store, f"{key}.json")
    here = {"field": field, "value": "" if value is None else value, "seed": seed, "point": name}
    here["dir"] = point_dir
    for done_path in (stored, path):
        if done_path and os.path.exists(done_path):
            with open(done_path) as f:
                done = json.load(f)
            done = done.get("result", done)  # a store file holds the identity beside it
            print(f"{name}: done earlier, skipped ({done_path})", flush=True)
            return {**done, **here}  # the same point may have another name in another sweep
    if not compute:
        return None
    print(f"\n=== {name} ({point_dir})", flush=True)
    os.makedirs(point_dir, exist_ok=True)
    with open(os.path.join(point_dir, "identity.json"), "w") as f:
        json.dump(identity, f, indent=2, sort_keys=True, default=str)
    if value is None:
        # The same init key as the pre-trained model of this seed: a paired baseline.
        model, params = ft_lib.random_init(pre, seed=seed)
        row = {"init": "random", "pretrain_seconds": 0.0}
        init = None
    else:
        s = train.train_and_evaluate(pre, os.path.join(point_dir, "pretrain"))
        pre, model, params = train.load_pretrained(os.path.join(point_dir, "pretrain"))
        row = {
            "init": "pretrained",
            "pretrain_first_loss": s.get("first_loss"),
            "pretrain_last_loss": s.get("last_loss"),
            "pretrain_top1": s.get("eval_accuracy"),
            "pretrain_seconds": time.perf_counter() - t0,
        }
        init = params
    row.update(here)
    row.update(evaluate(name, model, params, init, data, ft, pre, point_dir, few))
    row["total_seconds"] = time.perf_counter() - t0
    with open(path + ".tmp", "w") as f:
        json.dump(row, f, indent=2)
    os.replace(path + ".tmp", path)  # a point counts as done only once written whole
    if store:
        write_stored(stored, identity, row)
    return row


def write_stored(path: str, identity: dict, row: dict) -> None:
    """A point's result in the store (``sweep.store_dir``, small enough to commit): its
    identity, its result row and its pre-training loss curve. A sweep reads a point from
    there before it computes it, so committed results are reused on any machine."""
    log = os.path.join(row["dir"], "pretrain", "metrics.jsonl")
    curve = [[m["step"], m["loss"]] for m in read_jsonl(log)] if os.path.exists(log) else []
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"identity": identity, "result": row, "loss_curve": curve}, f, indent=1)
    os.replace(path + ".tmp", path)


def loss_curve(row: dict, store: str) -> list[tuple[int, float]]:
    """The pre-training loss curve of a pre-trained point: from its run, else its store file."""
    log = os.path.join(row.get("dir", ""), "pretrain", "metrics.jsonl")
    if os.path.exists(log):
        return [(m["step"], m["loss"]) for m in read_jsonl(log)]
    path = store and os.path.join(store, os.path.basename(row.get("dir", "")) + ".json")
    if path and os.path.exists(path):
        with open(path) as f:
            return [tuple(x) for x in json.load(f)["loss_curve"]]
    return []


def write_csv(rows: list[dict], path: str, first=("point", "field", "value", "seed", "init")):
    first = list(first)
    rest = sorted({k for r in rows for k in r} - set(first))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=first + rest)
        w.writeheader()
        w.writerows(rows)


def _is_numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot(rows: list[dict], field: str, workdir: str, log_x: bool, title: str, store="") -> None:
    """accuracy.png, loss.png and probe.png of a sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = [r for r in rows if r["init"] == "pretrained"]
    rand = [r for r in rows if r["init"] == "random"]
    values = list(dict.fromkeys(r["value"] for r in pre))
    numeric = _is_numeric(values)
    xs = values if numeric else list(range(len(values)))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (metric, color) in enumerate(zip(METRICS, ("C0", "C1", "C2"))):
        per = [stats.mean_sd([100 * r[metric] for r in pre if r["value"] == v]) for v in values]
        label = metric.replace("_top1", "").replace("_", " ")
        # Categories (sources) have no order to draw a line along; their metrics sit side by
        # side so the bars do not hide each other.
        at = xs if numeric else [x + 0.08 * (i - 1) for x in xs]
        ax.errorbar(
            at, [p[0] for p in per], yerr=[p[1] for p in per], fmt="o-" if numeric else "o",
            color=color, capsize=3, label=label,
        )  # fmt: skip
        if rand:
            m, sd, _ = stats.mean_sd([100 * r[metric] for r in rand])
            ax.axhline(m, color=color, ls="--", lw=1)
            ax.axhspan(m - sd, m + sd, color=color, alpha=0.1)
    if numeric and log_x:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in values])
    xlabel = field + ("  (dashed: random init; bars and bands: sd over seeds)" if rand else "")
    _save(fig, ax, xlabel, "test top-1 (%)", title, os.path.join(workdir, "accuracy.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in pre:
        curve = loss_curve(r, store)
        if curve:
            ax.plot([x[0] for x in curve], [x[1] for x in curve], label=r["point"])
    path = os.path.join(workdir, "loss.png")
    _save(fig, ax, "pre-training step", "LPCE (train, augmented)", title, path)

    layers = {r["point"]: ft_lib.probe_layers_of(r) for r in rows}
    ft_lib.plot_probe(layers, os.path.join(workdir, "probe.png"), f"{title}: probes per layer")


def _save(fig, ax, xlabel: str, ylabel: str, title: str, path: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(summary: list[dict]) -> str:
    """Mean +- sd over seeds of each metric, and the paired difference to the random init
    of the same seeds with its 95% t interval over seeds, one line per value."""
    head = f"{'value':<12}{'seeds':>6}{'pretrain':>10}"
    # The summarised metrics, in summarize's order (the pre-training top-1 is its own column).
    metrics = [
        k[: -len("_mean")]
        for k in summary[0]
        if k.endswith("_top1_mean") and k != "pretrain_top1_mean"
    ]
    lines = [head + "".join(f" {m:>36}" for m in metrics)]
    for s in summary:
        cells = ""
        for m in metrics:
            cell = f"{100 * s[f'{m}_mean']:.1f}"
            if s["seeds"] > 1:  # one seed has no spread to show
                cell += f" +- {100 * s[f'{m}_sd']:.1f}"
            if f"{m}_diff" in s:
                lo, hi = s[f"{m}_diff_lo"], s[f"{m}_diff_hi"]
                ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if np.isfinite(lo) else ""
                cell += f" (d {100 * s[f'{m}_diff']:+.1f}{ci})"
            cells += f" {cell:>36}"  # one space at least: a wide cell must not touch
        top = s.get("pretrain_top1_mean")
        pre = f"{100 * top:.1f}" if top is not None and np.isfinite(top) else "-"
        v = s["value"]
        shown = f"{v:g}" if isinstance(v, float) else str(v)
        lines.append(f"{shown:<12}{s['seeds']:>6}{pre:>10}{cells}")
    return "\n".join(lines)


def summarize(rows: list[dict]) -> list[dict]:
    """:func:`fractaljax.stats.summarize` of the metrics, plus the pre-training top-1."""
    out = stats.summarize(rows, metrics_of(rows))
    for s in out:
        top = [
            r["pretrain_top1"]
            for r in rows
            if r["init"] == "pretrained"
            and r["value"] == s["value"]
            and r.get("pretrain_top1") is not None
        ]
        s["pretrain_top1_mean"] = float(np.mean(top)) if top else float("nan")
    return out


def main(argv) -> None:
    del argv
    cfg = _CONFIG.value
    sw = cfg.sweep
    workdir = _WORKDIR.value or sw.workdir
    field, values, seeds = sw.field, list(sw.grid), list(sw.seeds)
    if not values or not seeds:
        raise ConfigError("sweep.grid and sweep.seeds: need at least one value each")
    for v in values:  # check every point's config before any training
        if field == "source":
            source_block(v, cfg.pretrain.source)
        else:
            config_utils.with_field(cfg.pretrain, field, v)
    t0 = time.perf_counter()
    train.prepare_workdir(workdir, cfg)
    pre = cfg.pretrain
    compute = not _FINISHED.value
    data = compute and ft_lib.load_downstream(
        cfg.finetune, train.input_size(pre), pre.render.channels, cfg.finetune.probe_train_limit
    )
    # Seed by seed, the random init first: a sweep stopped part-way still has whole, paired
    # seeds to summarise.
    points = [(v, s) for s in seeds for v in ([None] if sw.random_init else []) + values]
    print(
        f"sweep {field} over {values} x seeds {seeds}"
        f"{' + random init' if sw.random_init else ''}: {len(points)} points; downstream "
        + (
            f"{data.name} ({len(data.y_train)} probe train / {len(data.y_test)} test images)"
            if data
            else "finished points only"
        )
        + f"; workdir {workdir}",
        flush=True,
    )
    rows, missing = [], []
    for i, (value, seed) in enumerate(points):
        row = run_point(cfg, field, value, seed, data, workdir, compute)
        if row is None:
            missing.append(
                point_name(field, value, seed) if value is not None else f"random_init_seed{seed}"
            )
            continue
        rows.append(row)
        write_csv(rows, os.path.join(workdir, "results.csv"))
        elapsed = time.perf_counter() - t0
        print(f"[{i + 1}/{len(points)} points, {format_duration(elapsed)} elapsed]", flush=True)
    if missing:
        print(f"not finished, left out: {', '.join(missing)}", flush=True)
    if not rows:
        raise UserError(f"sweep {field}: no finished point yet; run it without --only_finished")
    title = f"{field} sweep, {cfg.finetune.downstream.dataset}"
    log_x = sw.log_x and _is_numeric(values)
    plot(rows, field, workdir, log_x, title, sw.get("store_dir", ""))
    summary = summarize(rows)
    write_csv(summary, os.path.join(workdir, "summary.csv"), first=("value", "seeds"))
    table = summary_table(summary)
    with open(os.path.join(workdir, "summary.txt"), "w") as f:
        f.write(table + "\n")
    total = sum(r["total_seconds"] for r in rows)
    print(
        f"\n{title} (test top-1 %, mean +- sd over seeds; d: paired difference to the random "
        f"init of the same seeds, [95% t interval over seeds]):\n{table}"
    )
    print(
        f"\ncompute in these points: {format_duration(total)}; this invocation "
        f"{format_duration(time.perf_counter() - t0)}. Outputs: {workdir}/results.csv, "
        "summary.csv, summary.txt, accuracy.png, loss.png, probe.png"
    )


if __name__ == "__main__":
    cli.run(main)
