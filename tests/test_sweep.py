"""experiments.sweep end to end on a tiny protocol (scikit-learn digits)."""

import csv
import os

import numpy as np
import pytest
from conftest import REPO, run_modules

TINY = {
    "pretrain.source.num_classes": 8,
    "pretrain.render.image_size": 16,
    "pretrain.render.walkers": 64,
    "pretrain.render.steps": 16,
    "pretrain.render.pad": 1,
    "pretrain.model.variant": "test/4",
    "pretrain.batch_size": 16,
    "pretrain.eval_batch_size": 16,
    "pretrain.total_steps": 4,
    "pretrain.warmup_steps": 1,
    "pretrain.log_every": 2,
    "pretrain.checkpoint_every": 4,
    "pretrain.evals.task.num": 64,  # the points' clean and redrawn top-1 (default 2,048)
    "finetune.downstream.dataset": "digits",
    "finetune.downstream.num_labels": 200,
    "finetune.probe_train_limit": 300,
    "finetune.batch_size": 16,
    "finetune.total_steps": 4,
    "finetune.warmup_steps": 1,
    "finetune.log_every": 2,
    "finetune.checkpoint_every": 4,
}
FLAGS = [f"--config.{k}={v}" for k, v in TINY.items()]


def test_sweep_writes_results_and_resumes(run, tmp_path):
    args = [
        "experiments.sweep",
        f"--workdir={tmp_path}",
        "--config.sweep.grid=(0.5,)",
        "--config.sweep.seeds=(0,)",
        "--config.sweep.few_labels=100",
        "--config.sweep.points_dir=",  # '': WORKDIR/points
        f"--config.sweep.store_dir={tmp_path}/store",
        *FLAGS,
    ]
    res = run(*args, "--update_store")
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["point"] for r in rows] == ["random_init_seed0", "delta=0.5_seed0"]
    rows = rows[::-1]  # pre-trained, random
    for r in rows:
        # The reported layers are the rows' own per-layer numbers; digits are learnable.
        assert r["probe_best_top1"] == r[f"probe_{r['probe_best_layer']}"], r
        assert r["probe_last_top1"] == r["probe_pre_logits"], r
        assert float(r["probe_best_top1"]) > 0.3, r  # chance: 0.1
        # Its wall time covers at least its own probes and fine-tuning.
        parts = float(r["probe_seconds"]) + float(r["finetune_seconds"])
        assert float(r["total_seconds"]) >= parts > 0, r
    assert rows[0]["init"] == "pretrained" and np.isfinite(float(rows[0]["pretrain_last_loss"]))
    assert rows[1]["init"] == "random" and rows[1]["pretrain_top1"] == ""
    for name in ("accuracy.png", "loss.png", "probe.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "random init" in res.stdout
    assert len(list((tmp_path / "points").glob("*/result.json"))) == 2
    assert len(list((tmp_path / "store").glob("*.json"))) == 2
    with open(tmp_path / "summary.csv") as f:
        summary = {r["value"]: r for r in csv.DictReader(f)}
    assert set(summary) == {"0.5", "random init"}
    for m in ("finetune_top1", "probe_best_top1", "probe_last_top1", "finetune_100labels_top1"):
        d = float(summary["0.5"][f"{m}_diff"])  # one seed: the paired difference itself
        np.testing.assert_allclose(d, float(rows[0][m]) - float(rows[1][m]), atol=1e-9)
    assert (tmp_path / "summary.txt").read_text().startswith("value")
    # Three commands that compute nothing, side by side from one interpreter (each its own
    # process): a rerun; another sweep with the committed store only; a sweep in progress.
    before = (tmp_path / "results.csv").read_text()
    sigma = [
        f"--workdir={tmp_path}/sigma",
        f"--config.sweep.points_dir={tmp_path}/elsewhere",
        f"--config.sweep.store_dir={tmp_path}/store",
        "--config.sweep.field=source.sigma",
        "--config.sweep.grid=(3.5,)",
        "--config.sweep.seeds=(0,)",
        "--config.sweep.few_labels=100",
        "--config.pretrain.source.delta=0.5",
        *FLAGS,
    ]
    part = [a for a in args[1:] if not a.startswith(("--config.sweep.seeds", "--workdir"))]
    part += ["--config.sweep.seeds=(0, 1)", f"--workdir={tmp_path}/part", "--only_finished"]
    (tmp_path / "out").mkdir()
    commands = [("experiments.sweep", a, {}) for a in (args[1:], sigma, part)]
    rerun, res, partial = run_modules(commands, str(tmp_path / "out"))
    # The rerun skips the finished points and rewrites the same table.
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("done earlier, skipped") == 2
    assert (tmp_path / "results.csv").read_text() == before
    # Another sweep, on another machine (no points directory) but with the committed store,
    # meets the same two points under other names (sigma 3.5 is the default): read back.
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("done earlier, skipped") == 2
    with open(tmp_path / "sigma" / "results.csv") as f:
        again = list(csv.DictReader(f))
    assert [r["point"] for r in again] == ["random_init_seed0", "sigma=3.5_seed0"]
    assert again[1]["finetune_top1"] == rows[0]["finetune_top1"]
    assert not (tmp_path / "elsewhere").exists()
    # A sweep in progress: the finished points summarised, nothing computed.
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert "left out: random_init_seed1, delta=0.5_seed1" in partial.stdout
    with open(tmp_path / "part" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "sigma" / "loss.png").stat().st_size > 1000


def test_point_configs():
    from configs import sweep_delta_mini
    from fractaljax import sweeps as sweep

    pre = sweep_delta_mini.get_config().pretrain
    c = sweep.point_config(pre, "source", "fractaldb", seed=3)
    assert c.source.name == "fractaldb" and c.source.num_classes == 1000 and c.seed == 3
    assert c.model.variant == pre.model.variant and c.total_steps == pre.total_steps
    c = sweep.point_config(pre, "source.delta", 0.01, seed=1)
    assert c.source.delta == 0.01 and c.seed == 1 and pre.source.delta == 0.1
    assert sweep.point_name("source.delta", 0.01, 1) == "delta=0.01_seed1"


@pytest.mark.parametrize(
    "name",
    [f"sweep_{s}_mini" for s in ("delta", "patch", "data", "sigma", "classes", "sources")],
)
def test_current_configs_find_the_stored_points(name):
    """Every point of a finished mini sweep is found under the key today's config gives it:
    a new config field (or a changed default) that moved the keys would silently orphan the
    committed results (docs/results/mini_points) and recompute them."""
    import importlib

    from fractaljax import sweeps as sweep

    cfg = importlib.import_module(f"configs.{name}").get_config()
    store = os.path.join(REPO, cfg.sweep.store_dir)
    for seed in cfg.sweep.seeds:
        for value in (None, *cfg.sweep.grid):
            key = sweep.point_key(sweep.point_setup(cfg, cfg.sweep.field, value, seed)[2])
            assert os.path.exists(os.path.join(store, f"{key}.json")), (value, seed, key)
    # A field that changes how, not what, is computed does not move the key.
    pre, ft, ident = sweep.point_setup(cfg, cfg.sweep.field, cfg.sweep.grid[0], 0)
    cfg.pretrain.render.rasterizer = "sort"
    assert sweep.point_key(sweep.point_setup(cfg, cfg.sweep.field, cfg.sweep.grid[0], 0)[2]) == (
        sweep.point_key(ident)
    )


def test_every_stored_small_point_is_reachable_from_todays_configs():
    """No orphan in docs/results/small_points: each stored point is the key today's
    configs give some point of the search (any variant, seeds 0-4) or of a small sweep, so
    no committed result is silently recomputed after a config change."""
    import importlib

    from experiments import search
    from fractaljax import sweeps as sweep

    store = os.path.join(REPO, "docs", "results", "small_points")
    stored = {f[:-5] for f in os.listdir(store) if f.endswith(".json")}
    assert stored, "no stored small points"
    reachable = set()
    cfg = importlib.import_module("configs.search_small").get_config()
    configs = [search.variant_config(cfg, name) for name in cfg.search.variants]
    for s in ("delta", "classes", "sources"):
        configs.append(importlib.import_module(f"configs.sweep_{s}_small").get_config())
    for c in configs:
        for seed in range(5):
            for value in (None, *c.sweep.grid):
                ident = sweep.point_setup(c, c.sweep.field, value, seed)[2]
                reachable.add(sweep.point_key(ident))
            for control in c.sweep.get("controls", {}):
                ident = sweep.point_setup(c, c.sweep.field, None, seed, control)[2]
                reachable.add(sweep.point_key(ident))
    assert stored <= reachable, sorted(stored - reachable)
