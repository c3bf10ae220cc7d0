"""Evaluators in the training loop (fractaljax.evals): run at their interval, logged with
the loss, and measuring only: the run trains the same weights with or without them."""

import ml_collections
import numpy as np
import pytest
from test_train import tiny_config

from fractaljax import evals, run_dir, train
from fractaljax.errors import ConfigError
from fractaljax.metrics import read_jsonl


def with_evals(data_dir: str) -> ml_collections.ConfigDict:
    c = tiny_config()
    c.evals = ml_collections.ConfigDict(
        {
            "task": {"every": 5, "num": 64},
            "probe": {"every": 10, "dataset": "digits", "data_dir": data_dir,
                      "num_train": 300, "val_size": 200},
            "finetune": {"every": 10, "recipe": "finetune_mini", "dataset": "digits",
                         "data_dir": data_dir, "num_labels": 300, "val_size": 200, "steps": 20,
                         "lr": 0.3},
        }
    )  # fmt: skip
    return c


def final_params(workdir) -> dict:
    return run_dir.load(str(workdir))[2]


def test_evaluators_run_at_their_interval_and_leave_the_run_unchanged(tmp_path, tiny_run, data_dir):
    cfg = with_evals(data_dir)
    summary = train.train_and_evaluate(cfg, str(tmp_path / "a"))
    rows = {r["step"]: r for r in read_jsonl(tmp_path / "a" / "metrics.jsonl")}
    assert sorted(rows) == [5, 10]
    for step in (5, 10):
        for k in ("task_clean_top1", "task_redrawn_top1"):
            assert 0.0 <= rows[step][k] <= 1.0
    assert "probe_best_val_top1" not in rows[5]  # every 10 steps only
    r = rows[10]
    assert 0.1 < r["probe_best_val_top1"] <= 1.0 and 0.0 <= r["probe_last_val_top1"] <= 1.0
    assert r["probe_best_val_top1"] >= r["probe_last_val_top1"] - 0.05
    assert r["probe_best_block"] in (-1, 0, 1, 2, 3)
    assert summary["probe_best_val_top1"] == r["probe_best_val_top1"]
    # A whole fine-tuning run per call, in a scratch directory that is removed after it.
    assert "finetune_val_top1" not in rows[5]
    assert 0.2 < r["finetune_val_top1"] <= 1.0  # digits: chance 0.1
    assert not list((tmp_path / "a").glob("evals_finetune_*"))
    assert "training" in (tmp_path / "a" / "evals_finetune.log").read_text()
    # Measuring only: the same run without evaluators trains the same weights, and a sweep
    # point's identity and a resume do not see them.
    a, b = final_params(tmp_path / "a"), final_params(tiny_run)  # tiny_config(), no evals
    np.testing.assert_array_equal(a["head"]["kernel"], b["head"]["kernel"])
    assert (
        run_dir.identity_config(cfg).to_dict() == run_dir.identity_config(tiny_config()).to_dict()
    )
    cfg.evals.task.every = 10
    run_dir.check_resume(str(tmp_path / "a"), cfg, 10, allow_changes=False)  # no error


@pytest.mark.parametrize(
    "evals_block, match",
    [
        ({"nope": {"every": 5}}, "evals.nope: no such evaluator"),
        (
            {"task": {"every": 3}},
            r"evals.task.every=3: must be 0 \(off\) or a positive multiple of log_every=5",
        ),
        ({"task": {"every": -5}}, "evals.task.every=-5"),
        ({"finetune": {"every": 5, "lr": 0.0}}, "evals.finetune.lr=0.0: must be > 0"),
        ({"finetune": {"every": 5, "steps": 0}}, "evals.finetune.steps=0: must be an integer"),
        ({"finetune": {"every": 5, "recipe": "nope"}}, "no fine-tuning config configs/nope.py"),
        ({"probe": {"every": 5, "nope": 1}}, "evals.probe.nope: no such field"),
    ],
)
def test_bad_evaluator_config_is_a_config_error(evals_block, match):
    c = tiny_config()
    c.evals = ml_collections.ConfigDict(evals_block)
    with pytest.raises(ConfigError, match=match):
        evals.validate(c)


def test_the_configs_evaluators_are_off_and_name_every_option():
    """Every pre-training config carries ``evals`` with each evaluator off (so that the
    command line can turn one on), with the probe's options as fractaljax.evals.probe's
    defaults; an old run's record without the block sees no change on resume."""
    import json

    from configs import onepfrac
    from fractaljax.evals import probe

    c = onepfrac.get_config("small")
    assert set(c.evals) == set(evals.EVALUATORS)
    assert all(c.evals[n].every == 0 for n in c.evals)
    assert {k: c.evals.probe[k] for k in probe.DEFAULTS} == probe.DEFAULTS
    assert evals.make(c, None, None, "") == {}  # off: nothing built
    old = json.loads(c.to_json_best_effort())
    del old["evals"]
    assert run_dir.config_changes(old, c) == {}
    c.evals.task.every = 500
    assert run_dir.config_changes(old, c) == {
        "evals.task.every": (None, 500), "evals.task.num": (None, 2048)
    }  # fmt: skip
