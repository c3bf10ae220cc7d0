"""Sweeps over pre-training configs, as content-addressed points with paired statistics.

A sweep point is one pre-training config (or the random init of a seed, or a control such
as the drift control) evaluated on a downstream set: per-layer probes and fine-tuning
(:func:`fractaljax.finetune.evaluate_transfer`). Its key is a hash of everything its result
depends on (:func:`point_identity`), so sweeps that share a points directory compute a
shared point once, and a finished point is read back from its ``result.json`` or from the
store (``sweep.store_dir``: one small JSON per point, committed for the sweeps in
docs/results). :func:`run_sweep` runs or reads every point of a sweep config, seed by seed;
:func:`report` writes the tables (mean +- sd over seeds, paired differences with t
intervals) and plots. The command-line entry points are ``experiments.sweep`` and
``experiments.search``.

Why one file of this size: a point's identity, its stored result and the rows the report
reads must change together (a change to one is a change to the committed store's keys).
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import re
import time

import ml_collections
import numpy as np

from fractaljax import config_utils, files, run_dir, stats, train
from fractaljax import finetune as ft_lib
from fractaljax.errors import ConfigError
from fractaljax.evals import task as evals_task
from fractaljax.metrics import format_duration, read_jsonl

METRICS = ("finetune_top1", "probe_best_top1", "probe_last_top1")


def few_label_twin(metric: str, n: int) -> str:
    """``finetune_top1`` -> ``finetune_<n>labels_top1`` (and ``..._val_top1`` alike)."""
    suffix = "_val_top1" if metric.endswith("_val_top1") else "_top1"
    return f"{metric[: -len(suffix)]}_{n}labels{suffix}"


def metrics_of(rows: list[dict], headline: tuple[str, ...] = METRICS) -> tuple[str, ...]:
    """The ``headline`` metrics present in ``rows``, then their few-label twins
    (:func:`few_label_twin`) where the sweep ran a few-label regime."""
    present = {k for r in rows for k, v in r.items() if v not in (None, "")}
    few = sorted({int(m.group(1)) for k in present if (m := re.search(r"_(\d+)labels_", k))})
    twins = tuple(few_label_twin(m, n) for n in few for m in headline)
    return tuple(m for m in headline + twins if m in present)


def source_block(
    name: str, like: ml_collections.ConfigDict, recipe: str = "mini"
) -> ml_collections.ConfigDict:
    """The source block of ``configs/<name>.py:<recipe>`` with ``like``'s number of classes
    (``like`` itself, copied, when it is already that source)."""
    if name == like.name:
        return ml_collections.ConfigDict(like.to_dict())
    try:
        module = importlib.import_module(f"configs.{name}")
    except ImportError:
        raise ConfigError(f"sweep.grid: no source config configs/{name}.py") from None
    c = module.get_config(recipe)
    block = ml_collections.ConfigDict(c.source.to_dict())
    block.num_classes = like.num_classes
    if "labels" in like:
        block.labels = like.labels
    return block


def point_config(
    pre: ml_collections.ConfigDict, field: str, value, seed: int, recipe: str = "mini"
):
    """The pre-training config of one point of the sweep (``recipe``: the size of the
    configs that ``field='source'`` takes its source blocks from)."""
    c = ml_collections.ConfigDict(pre.to_dict())
    if field == "source":
        c.source = source_block(value, pre.source, recipe)
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
    pre = run_dir.identity_config(pre)
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


def point_key(identity: dict) -> str:
    """A short stable hash of :func:`point_identity` (its JSON with sorted keys)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def control_names(cfg) -> list[str]:
    """The sweep's controls (``sweep.controls``: name -> overrides of the pre-training)."""
    return list(cfg.sweep.get("controls", None) or {})


def control_config(pre: ml_collections.ConfigDict, overrides, name: str):
    """``pre`` with a control's overrides: ``((dotted field, value), ...)``."""
    items = overrides.items() if hasattr(overrides, "items") else overrides
    c = ml_collections.ConfigDict(pre.to_dict())
    for path, value in items:
        try:
            c = config_utils.with_field(c, path, value)
        except (KeyError, AttributeError):
            raise ConfigError(
                f"sweep.controls.{name}: unknown pre-training field {path!r}"
            ) from None
    return c


def point_setup(cfg, field: str, value, seed: int, control: str | None = None):
    """``(pretrain config, finetune config, identity)`` of a sweep point (``value`` None:
    the random init; ``control``: that control of ``sweep.controls`` instead of a value)."""
    if control is not None:
        pre = control_config(cfg.pretrain, cfg.sweep.controls[control], control)
        pre.seed = seed
    elif value is None:
        pre = ml_collections.ConfigDict(cfg.pretrain.to_dict())
        pre.seed = seed
    else:
        pre = point_config(cfg.pretrain, field, value, seed, cfg.sweep.get("recipe", "mini"))
    # The labelled subset is the same for every point (paired comparisons); the seed moves
    # the fine-tuning's batches and augmentation.
    ft = ml_collections.ConfigDict(cfg.finetune.to_dict())
    ft.seed = seed
    few = cfg.sweep.get("few_labels", 0)
    random_init = value is None and control is None
    return pre, ft, point_identity(pre, ft, few, seed, random_init=random_init)


def point_label(field: str, value, seed: int, control: str | None = None) -> str:
    if control is not None:
        return f"{control}_seed{seed}"
    return point_name(field, value, seed) if value is not None else f"random_init_seed{seed}"


def run_point(
    cfg,
    field,
    value,
    seed,
    data,
    workdir,
    compute: bool = True,
    control: str | None = None,
    update_store: bool = False,
) -> dict | None:
    """Pre-train (or not: ``value is None`` is the random init) and evaluate one point;
    ``control`` names a control of ``sweep.controls`` to run instead of a value.

    The point lives in ``<sweep.points_dir or workdir>/points/<key>`` (see
    :func:`point_identity`); a finished one (its ``result.json``, or its file in the store
    ``sweep.store_dir``) is read back. A new point's store file is written into its own
    directory (``stored.json``), and into the store only with ``update_store`` (the stores
    of the sweeps here are committed in docs/results: a sweep adds to them only when asked).
    """
    t0 = time.perf_counter()
    name = point_label(field, value, seed, control)
    pre, ft, identity = point_setup(cfg, field, value, seed, control)
    few = cfg.sweep.get("few_labels", 0)
    key = point_key(identity)
    root = cfg.sweep.get("points_dir", "") or workdir
    point_dir = os.path.join(root, "points", key)
    path = os.path.join(point_dir, "result.json")
    store = cfg.sweep.get("store_dir", "")
    stored = store and os.path.join(store, f"{key}.json")
    here = {"field": field, "value": "" if value is None else value, "seed": seed, "point": name}
    if control is not None:
        here.update(value=control, init="control")
    here["dir"] = point_dir
    for done_path in (stored, path):
        if done_path and os.path.exists(done_path):
            with open(done_path) as f:
                done = json.load(f)
            done = done.get("result", done)  # a store file holds the identity beside it
            if compute:  # tabulating only, one line for all of them (run_sweep)
                print(f"{name}: done earlier, skipped ({done_path})", flush=True)
            return {**done, **here}  # the same point may have another name in another sweep
    if not compute:
        return None
    print(f"\n=== {name} ({point_dir})", flush=True)
    os.makedirs(point_dir, exist_ok=True)
    with open(os.path.join(point_dir, "identity.json"), "w") as f:
        json.dump(identity, f, indent=2, sort_keys=True, default=str)
    pre_dir = None
    if value is not None or control is not None:
        # Points that differ only downstream share one pre-training run.
        pre_dir = here["pretrain_dir"] = pretrain_dir(root, identity)
    row = evaluate_point(name, pre, seed, data, ft, point_dir, few, pre_dir, here)
    row["total_seconds"] = time.perf_counter() - t0
    files.write_atomic(path, json.dumps(row, indent=2))  # done only once written whole
    write_stored(os.path.join(point_dir, "stored.json"), identity, row)
    if store and update_store:
        write_stored(stored, identity, row)
    return row


def evaluate_point(
    name: str,
    pre: ml_collections.ConfigDict,
    seed: int,
    data: ft_lib.Splits,
    ft: ml_collections.ConfigDict,
    point_dir: str,
    few_labels: int = 0,
    pre_dir: str | None = None,
    fields: dict | None = None,
) -> dict:
    """The chain of one model, the same for a sweep point and the quickstart: pre-train
    ``pre`` in ``pre_dir`` (resuming; None: the random init of ``seed``, from the
    pre-training's own init key, so the pair starts from the same weights), take the weights
    and source the run hands back (:func:`fractaljax.train.run`), measure its own task
    (fractaljax.evals.task: clean and redrawn top-1), then its transfer to ``data``
    (:func:`evaluate`, in ``point_dir``). ``fields`` go into the row before the transfer
    metrics (they may override ``init``). Returns the row."""
    t0 = time.perf_counter()
    if pre_dir is None:
        model, params = ft_lib.random_init(pre, seed=seed)
        row = {"init": "random", "pretrain_seconds": 0.0}
        init = None
    else:
        s, model, params, source = train.run(pre, pre_dir)
        # On evals.task.num images, as the task evaluator would measure.
        num = evals_task.num_of(pre)
        task = evals_task.task_accuracies(model, params, source, pre, num=num)
        row = {
            "init": "pretrained",
            "pretrain_first_loss": s.get("first_loss"),
            "pretrain_last_loss": s.get("last_loss"),
            "pretrain_top1": s.get("eval_accuracy"),
            # The logged pretrain_top1 is on one batch of eval_batch_size.
            "pretrain_clean_top1": task["clean_top1"],
            "pretrain_redrawn_top1": task["redrawn_top1"],
            "pretrain_seconds": time.perf_counter() - t0,
        }
        init = params
    row.update(fields or {})
    row.update(evaluate(name, model, params, init, data, ft, pre, point_dir, few_labels))
    return row


def pretrain_dir(root: str, identity: dict) -> str:
    """``<root>/pretrain/<key>``: the pre-training run of a point, keyed by its pre-training
    config alone (:func:`point_identity`'s ``pretrain``), so that points that differ only in
    their downstream evaluation (a fine-tuning recipe, say) train it once."""
    key = point_key({"version": identity["version"], "pretrain": identity["pretrain"]})
    return os.path.join(root, "pretrain", key)


def _pretrain_log(row: dict) -> str:
    """The metrics.jsonl of a point's pre-training (points from before shared pre-training
    runs kept theirs in ``<point>/pretrain``)."""
    where = row.get("pretrain_dir") or os.path.join(row.get("dir", ""), "pretrain")
    return os.path.join(where, "metrics.jsonl")


def write_stored(path: str, identity: dict, row: dict) -> None:
    """A point's result in the store (``sweep.store_dir``, small enough to commit): its
    identity, its result row and its pre-training loss curve. A sweep reads a point from
    there before it computes it, so committed results are reused on any machine."""
    log = _pretrain_log(row)
    curve = [[m["step"], m["loss"]] for m in read_jsonl(log)] if os.path.exists(log) else []
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.write_atomic(
        path, json.dumps({"identity": identity, "result": row, "loss_curve": curve}, indent=1)
    )


def loss_curve(row: dict, store: str) -> list[tuple[int, float]]:
    """The pre-training loss curve of a pre-trained point: from its run, else its store file."""
    log = _pretrain_log(row)
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


def plot(
    rows: list[dict], field: str, workdir: str, log_x: bool, title: str, store="", metrics=METRICS
) -> None:
    """accuracy.png (``metrics`` against the swept value; random init and controls as
    horizontal lines), loss.png and probe.png of a sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = [r for r in rows if r["init"] == "pretrained"]
    rand = [r for r in rows if r["init"] == "random"]
    controls = {r["value"]: [] for r in rows if r["init"] == "control"}
    for r in rows:
        if r["init"] == "control":
            controls[r["value"]].append(r)
    values = list(dict.fromkeys(r["value"] for r in pre))
    numeric = _is_numeric(values)
    xs = values if numeric else list(range(len(values)))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (metric, color) in enumerate(zip(metrics, ("C0", "C1", "C2"))):
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
        for rs in controls.values():
            ax.axhline(stats.mean_sd([100 * r[metric] for r in rs])[0], color=color, ls=":", lw=1)
    if numeric and log_x:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in values])
    xlabel = field + ("  (dashed: random init; bars and bands: sd over seeds)" if rand else "")
    if controls:
        xlabel += f"\n(dotted: {', '.join(controls)})"
    split = "validation" if all(m.endswith("_val_top1") for m in metrics) else "test"
    _save(fig, ax, xlabel, f"{split} top-1 (%)", title, os.path.join(workdir, "accuracy.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in pre:
        curve = loss_curve(r, store)
        if curve:
            ax.plot([x[0] for x in curve], [x[1] for x in curve], label=r["point"])
    path = os.path.join(workdir, "loss.png")
    _save(fig, ax, "pre-training step", "LPCE (train, augmented)", title, path)

    layers = {r["point"]: ft_lib.probe_layers_of(r) for r in rows}
    best = {r["point"]: r["probe_best_layer"] for r in rows if r.get("probe_best_layer")}
    path = os.path.join(workdir, "probe.png")
    ft_lib.plot_probe(layers, path, f"{title}: probes per layer", best=best)


def _save(fig, ax, xlabel: str, ylabel: str, title: str, path: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # beside the axes: no line hidden behind it
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def diff_text(s: dict, m: str) -> str:
    """``d +1.6 [+0.6, +2.5]``: a summary row's paired difference of metric ``m`` in points,
    with its interval where there is one (two seeds or more)."""
    lo, hi = s[f"{m}_diff_lo"], s[f"{m}_diff_hi"]
    ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if np.isfinite(lo) else ""
    return f"d {100 * s[f'{m}_diff']:+.1f}{ci}"


def summary_table(summary: list[dict]) -> str:
    """Mean +- sd over seeds of each metric, and the paired difference to the random init
    of the same seeds with its 95% t interval over seeds, one line per value."""
    redrawn = any(np.isfinite(s.get("pretrain_redrawn_top1_mean", np.nan)) for s in summary)
    head = f"{'value':<12}{'seeds':>6}{'pretrain':>10}" + (f"{'redrawn':>9}" if redrawn else "")
    # The summarised metrics, in summarize's order (the pre-training top-1 is its own column).
    metrics = [
        k[: -len("_mean")]
        for k in summary[0]
        if k.endswith("_top1_mean") and not k.startswith("pretrain_")
    ]
    lines = [head + "".join(f" {m:>36}" for m in metrics)]
    for s in summary:
        cells = ""
        for m in metrics:
            cell = f"{100 * s[f'{m}_mean']:.1f}"
            if s["seeds"] > 1:  # one seed has no spread to show
                cell += f" +- {100 * s[f'{m}_sd']:.1f}"
            if f"{m}_diff" in s:
                cell += f" ({diff_text(s, m)})"
            cells += f" {cell:>36}"  # one space at least: a wide cell must not touch
        pct = lambda x: f"{100 * x:.1f}" if x is not None and np.isfinite(x) else "-"
        pre = f"{pct(s.get('pretrain_top1_mean')):>10}"
        if redrawn:
            pre += f"{pct(s.get('pretrain_redrawn_top1_mean')):>9}"
        v = s["value"]
        shown = f"{v:g}" if isinstance(v, float) else str(v)
        lines.append(f"{shown:<12}{s['seeds']:>6}{pre}{cells}")
    return "\n".join(lines)


def summarize(rows: list[dict], metrics=None, baseline="random init") -> list[dict]:
    """:func:`fractaljax.stats.summarize` of the metrics (paired with ``baseline``), plus
    the pre-training top-1 and, where measured, the redrawn top-1 (means over seeds)."""
    out = stats.summarize(rows, metrics or metrics_of(rows), baseline=baseline)
    for s in out:
        for col in ("pretrain_top1", "pretrain_redrawn_top1"):
            vals = [
                r[col]
                for r in rows
                if r["init"] != "random"
                and stats.group_of(r) == s["value"]
                and r.get(col) not in (None, "")
            ]
            s[f"{col}_mean"] = float(np.mean(vals)) if vals else float("nan")
    return out


def headline(cfg) -> tuple[str, ...]:
    """The metrics a sweep summarises (``sweep.metrics``, default :data:`METRICS`)."""
    return tuple(cfg.sweep.get("metrics", None) or METRICS)


def check_points(cfg) -> None:
    """Build every point's config before any training: a bad value stops the sweep first."""
    sw = cfg.sweep
    if not list(sw.grid) or not list(sw.seeds):
        raise ConfigError("sweep.grid and sweep.seeds: need at least one value each")
    # Each pre-training checked as a run checks itself (train.validate): a neutral field's
    # bad value would otherwise pass every stored point and stop the first new one.
    train.validate(cfg.pretrain)
    for v in sw.grid:
        if sw.field == "source":
            source_block(v, cfg.pretrain.source, sw.get("recipe", "mini"))
        else:
            train.validate(config_utils.with_field(cfg.pretrain, sw.field, v))
    for name in control_names(cfg):
        train.validate(control_config(cfg.pretrain, sw.controls[name], name))


def load_data(cfg) -> ft_lib.Splits:
    pre = cfg.pretrain
    return ft_lib.load_downstream(
        cfg.finetune, train.input_size(pre), pre.render.channels, cfg.finetune.probe_train_limit
    )


def run_sweep(
    cfg, workdir: str, compute: bool = True, data=None, update_store: bool = False
) -> list[dict]:
    """Every point of ``cfg`` (computed, or read back; with ``compute`` False only those
    finished), seed by seed: the random init, the controls, then the values, so a sweep
    stopped part-way still has whole, paired seeds to summarise. With
    ``sweep.time_budget_minutes`` no point starts once that much time has passed (a point
    under way finishes). Returns their rows."""
    sw = cfg.sweep
    field, values, seeds = sw.field, list(sw.grid), list(sw.seeds)
    controls = control_names(cfg)
    paired_with(cfg)  # checked before the first point, not after the last
    points = [
        (v, s, c)
        for s in seeds
        for v, c in ([(None, None)] if sw.random_init else [])
        + [(None, c) for c in controls]
        + [(v, None) for v in values]
    ]
    if compute and data is None:
        data = load_data(cfg)
    extra = " + random init" if sw.random_init else ""
    extra += "".join(f" + {c}" for c in controls)
    print(
        f"sweep {field} over {values} x seeds {seeds}{extra}: {len(points)} points; "
        + (
            f"downstream {data.name} ({len(data.y_train)} probe train / "
            + (f"{len(data.y_val)} validation / " if data.has_val else "")
            + f"{len(data.y_test)} test images)"
            if compute
            else "finished points only"
        )
        + f"; workdir {workdir}",
        flush=True,
    )
    os.makedirs(workdir, exist_ok=True)
    t0 = time.perf_counter()
    budget = 60 * float(sw.get("time_budget_minutes", 0) or 0)
    rows, missing = [], []
    for i, (value, seed, control) in enumerate(points):
        if compute and budget and time.perf_counter() - t0 > budget:
            print(f"time budget of {budget / 60:g} min spent: no new point starts", flush=True)
            compute = False  # finished points are still read back
        row = run_point(cfg, field, value, seed, data, workdir, compute, control, update_store)
        if row is None:
            missing.append(point_label(field, value, seed, control))
            continue
        rows.append(row)
        write_csv(rows, os.path.join(workdir, "results.csv"))
        if compute:
            elapsed = format_duration(time.perf_counter() - t0)
            print(f"[{i + 1}/{len(points)} points, {elapsed} elapsed]", flush=True)
    if not compute:
        print(f"{len(rows)} finished points read back", flush=True)
    if missing:
        print(f"not finished, left out: {', '.join(missing)}", flush=True)
    return rows


def report(cfg, rows: list[dict], workdir: str) -> str:
    """Plots, ``summary.csv``/``summary.txt`` (paired with the random init) and, for every
    control, ``summary_vs_<control>.txt`` (paired with that control); returns the text."""
    sw = cfg.sweep
    field, values = sw.field, list(sw.grid)
    title = f"{field} sweep, {cfg.finetune.downstream.dataset}"
    log_x = sw.log_x and _is_numeric(values)
    metrics = metrics_of(rows, headline(cfg))
    plot(rows, field, workdir, log_x, title, sw.get("store_dir", ""), metrics[:3])
    summary = summarize(rows, metrics)
    write_csv(summary, os.path.join(workdir, "summary.csv"), first=("value", "seeds"))
    table = summary_table(summary)
    with open(os.path.join(workdir, "summary.txt"), "w") as f:
        f.write(table + "\n")
    split = "validation" if all(m.endswith("_val_top1") for m in metrics) else "test"
    text = (
        f"{title} ({split} top-1 %, mean +- sd over seeds; d: paired difference to the "
        f"random init of the same seeds, [95% t interval over seeds]):\n{table}"
    )
    chosen = chosen_on_validation(rows, metrics, summary)
    stale = os.path.join(workdir, "chosen_on_validation.txt")
    if not chosen and os.path.exists(stale):
        os.remove(stale)  # from an earlier report of this workdir
    if chosen:
        lines = chosen_table(chosen)
        with open(os.path.join(workdir, "chosen_on_validation.txt"), "w") as f:
            f.write(lines + "\n")
        text += (
            "\n\nthe value chosen on validation (highest mean validation top-1 over seeds), "
            f"its test top-1 and d to the random init:\n{lines}"
        )
    for group, label in baselines(cfg, rows):
        vs = summary_table(summarize(rows, metrics, baseline=group))
        with open(os.path.join(workdir, f"summary_vs_{group}.txt"), "w") as f:
            f.write(vs + "\n")
        text += f"\n\nthe same, d paired with {label} of the same seeds:\n{vs}"
    return text


def validation_twin(metric: str) -> str:
    """The validation metric that selects for a test metric: ``finetune_top1`` ->
    ``finetune_val_top1``, ``probe_best_1000labels_top1`` -> ``..._1000labels_val_top1``."""
    return metric[: -len("_top1")] + "_val_top1"


def chosen_on_validation(rows: list[dict], metrics, summary: list[dict]) -> list[dict]:
    """For each test metric with a validation twin in ``rows``: the swept value (not a
    control, not the random init) with the highest validation top-1 averaged over seeds,
    among the values with the most seeds (a value with fewer seeds is not comparable), and
    that value's test row of ``summary`` (with its paired difference). Choosing the value
    on test data would be choosing by the number reported; this is the number a reader
    may quote for "the best value"."""
    out = []
    pretrained = [r for r in rows if r["init"] == "pretrained"]
    by_value: dict = {}
    for r in pretrained:
        by_value.setdefault(r["value"], []).append(r)
    most = max((len(v) for v in by_value.values()), default=0)
    eligible = {v: rs for v, rs in by_value.items() if len(rs) == most}
    test_rows = {s["value"]: s for s in summary}
    for m in metrics:
        twin = validation_twin(m)
        if m.endswith("_val_top1") or not all(r.get(twin) not in (None, "") for r in pretrained):
            continue
        val = {v: float(np.mean([float(r[twin]) for r in rs])) for v, rs in eligible.items()}
        if not val:
            continue
        ranked = sorted(val, key=val.get, reverse=True)
        out.append(
            dict(metric=m, value=ranked[0], seeds=most, val_mean=val[ranked[0]],
                 runner_up=ranked[1] if len(ranked) > 1 else None,
                 runner_up_val_mean=val[ranked[1]] if len(ranked) > 1 else None,
                 test=test_rows[ranked[0]])
        )  # fmt: skip
    return out


def chosen_table(chosen: list[dict]) -> str:
    """:func:`chosen_on_validation` as lines of text."""
    lines = []
    for c in chosen:
        m, t = c["metric"], c["test"]
        nxt = (
            f"; next {c['runner_up']} at {100 * c['runner_up_val_mean']:.1f}"
            if c["runner_up"] is not None
            else ""
        )
        d = f", {diff_text(t, m)}" if f"{m}_diff" in t else ""
        lines.append(
            f"{m}: {c['value']} (validation {100 * c['val_mean']:.1f} over {c['seeds']} "
            f"seeds{nxt}) -> test {100 * t[f'{m}_mean']:.1f}{d}"
        )
    return "\n".join(lines)


def baselines(cfg, rows: list[dict]) -> list[tuple[object, str]]:
    """``(group, label)`` of what a sweep's differences are also paired with, besides the
    random init: every control with rows, then each swept value of ``sweep.paired_with``
    with rows (the paper's comparisons between values, e.g. Delta 0.1 against 0.001)."""
    out = [
        (name, f"the control {name!r}")
        for name in control_names(cfg)
        if any(r["value"] == name and r["init"] == "control" for r in rows)
    ]
    for value in paired_with(cfg):
        if any(r["value"] == value and r["init"] == "pretrained" for r in rows):
            out.append((value, f"{cfg.sweep.field}={value}"))
    return out


def paired_with(cfg) -> tuple:
    """``sweep.paired_with``, each a value of ``sweep.grid`` (checked)."""
    values = tuple(cfg.sweep.get("paired_with", None) or ())
    for value in values:
        if value not in cfg.sweep.grid:
            raise ConfigError(
                f"sweep.paired_with={value!r}: not a value of sweep.grid "
                f"{tuple(cfg.sweep.grid)}; add it to the grid (a stored point costs nothing) "
                "or set sweep.paired_with=()"
            )
    return values
