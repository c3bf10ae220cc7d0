"""What a run guarantees when it is resumed, changed, corrupted or pre-empted
(docs/reliability.md lists each guarantee and the test that shows it)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO
from test_train import TINY_FLAGS, _params, tiny_config

from fractaljax import train
from fractaljax.errors import ConfigError
from fractaljax.metrics import read_jsonl


def _same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_with_a_changed_config_stops_unless_allowed(tmp_path):
    train.train_and_evaluate(tiny_config(total_steps=10), str(tmp_path), stop_at=5)
    before = (tmp_path / "config.json").read_text()
    changed = tiny_config(total_steps=10, batch_size=8, **{"source.delta": 0.3})
    with pytest.raises(ConfigError, match=r"source.delta \(0.1 -> 0.3\)") as e:
        train.train_and_evaluate(changed, str(tmp_path))
    assert "batch_size (16 -> 8)" in str(e.value) and "allow_changes=True" in str(e.value)
    assert (tmp_path / "config.json").read_text() == before  # the record is untouched
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["5"]
    # Allowed: it goes ahead, and the record says what changed and when.
    train.train_and_evaluate(changed, str(tmp_path), allow_changes=True)
    (rec,) = read_jsonl(tmp_path / "config_changes.jsonl")
    assert rec["step"] == 5 and rec["allowed"]
    assert rec["changes"]["source.delta"] == [0.1, 0.3]
    assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 8


def test_extending_a_run_is_allowed_and_recorded(tmp_path):
    train.train_and_evaluate(tiny_config(total_steps=6, log_every=3), str(tmp_path))
    train.train_and_evaluate(tiny_config(total_steps=9, log_every=3), str(tmp_path))
    (rec,) = read_jsonl(tmp_path / "config_changes.jsonl")
    assert rec["changes"] == {"total_steps": [6, 9]} and not rec["allowed"]
    steps = [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 9, steps


def test_metrics_hold_each_step_once_after_a_resume(tmp_path):
    c = tiny_config(total_steps=20, log_every=5, checkpoint_every=10)
    train.train_and_evaluate(c, str(tmp_path))
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    # A kill after the step-15 log and before the step-20 save: the checkpoint is missing.
    shutil.rmtree(tmp_path / "checkpoints" / "20")
    train.train_and_evaluate(c, str(tmp_path))
    again = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in again] == [r["step"] for r in rows] == [5, 10, 15, 20]
    for a, b in zip(rows, again):  # the same steps again, the same values (bit-exact resume)
        assert a["loss"] == b["loss"], (a, b)


def test_an_unreadable_latest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    c = tiny_config(total_steps=20, log_every=10, checkpoint_every=10)
    straight = tmp_path / "straight"
    train.train_and_evaluate(c, str(straight))
    run = tmp_path / "run"
    train.train_and_evaluate(c, str(run))
    (run / "checkpoints" / "20" / "default" / "_METADATA").write_text("garbage")
    train.train_and_evaluate(c, str(run))
    out = capsys.readouterr().out
    assert "checkpoint" in out and "20 is unreadable" in out and "resuming from step 10" in out
    assert (run / "unreadable_checkpoints" / "20").is_dir()  # kept, not deleted
    _same_params(_params(straight, 20), _params(run, 20))  # step 20 trained again, exactly


def test_sigterm_saves_a_checkpoint_exits_0_and_resumes_bit_for_bit(tmp_path):
    flags = [*TINY_FLAGS, "--config.total_steps=100000", "--config.log_every=1"]
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.pretrain", f"--workdir={run}", *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and len(read_jsonl(metrics)) >= 3):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert time.time() - t0 < 30
    assert "stopped: SIGTERM at step" in out and "rerun the same command" in out
    step = int(out.split("stopped: SIGTERM at step ")[1].split(":")[0])
    assert step >= 3 and max(int(s) for s in os.listdir(run / "checkpoints")) == step
    # Resumed to step + 2 with the same schedule (total_steps unchanged), it equals a run
    # that was never stopped.
    c = tiny_config(total_steps=100000, log_every=1)
    train.train_and_evaluate(c, str(run), stop_at=step + 2)
    straight = tmp_path / "straight"
    train.train_and_evaluate(c, str(straight), stop_at=step + 2)
    _same_params(_params(straight, step + 2), _params(run, step + 2))
